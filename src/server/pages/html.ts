/** How every page of the daemon begins, up to its title; the page adds the rest of its head and closes it. */
export function pageHead(title: string, extra = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
${extra}<title>${title}</title>`;
}
