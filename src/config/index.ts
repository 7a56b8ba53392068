/** The serve config: schema, loader and stream input validation. */
export * from './schema.js';
export * from './load.js';
export * from './input.js';
