"""A procedurally generated video world with live commentary as ground truth.

Each clip is a deterministic function of its seed. Objects (circle, square, triangle;
five colours; small or big) enter from an edge, move, turn, stop, change colour, grow or
shrink, meet each other and leave. At most two objects are on screen and at most one
moves at a time, so every frame carries at most one event.

Every caption is decidable from the current frame plus the text said so far:
- a moving object is drawn with a fading trail behind it, so the frame shows the
  direction of motion; a stopped object has no trail;
- on the frame of a colour or size change the object wears a faint halo in its previous
  colour (the change caught mid-way), so the frame shows which object changed even when
  its last known state has left the runtime's bounded context: a halo of another colour
  means "turns <colour>", one of its own colour "grows" (now big) or "shrinks" (now small);
- the commentary states every change of an object's state (colour, size, motion,
  presence), so the text history holds the last known state of each object; a caption
  says what differs between the frame and that state, and a frame with no difference is
  silent;
- "it" names the only object on screen, "the <shape>" one of two; "another" is used for
  every entry after the first; "again" is appended when an object sets off in one
  of the last two directions it moved in, which its last two motion captions decide (so
  the text that decides it is recent, and survives the runtime's bounded context).
"""
from __future__ import annotations

import dataclasses
import random
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (228, 46, 46),
    "green": (52, 196, 72),
    "blue": (64, 110, 255),
    "yellow": (240, 214, 48),
    "white": (238, 238, 238),
}
SIZES = {"small": 0.095, "big": 0.14}  # small stays ~12 px across at 64 px: its shape is legible
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
ENTRY_SIDES = {"left": "right", "right": "left", "top": "down", "bottom": "up"}
SPEED = 0.075  # canvas units per frame (2 fps)
BACKGROUNDS = [(28, 30, 38), (22, 44, 34), (46, 28, 30), (34, 34, 62), (52, 46, 30), (40, 40, 40)]
FPS = 2.0
HALO_SCALE, HALO_ALPHA = 1.5, 0.6  # the change halo: radius relative to the object, opacity


@dataclasses.dataclass
class Obj:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    direction: Optional[str] = None  # None when still
    recent_directions: Tuple[str, ...] = ()  # of its last two motions, oldest first; kept after it stops
    halo: Optional[str] = None  # previous colour, on the frame of a colour or size change

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclasses.dataclass
class Background:
    base: Tuple[int, int, int]
    pattern: str  # solid | vgradient | hgradient | stripes | checker
    accent: Tuple[int, int, int]


@dataclasses.dataclass
class FrameState:
    objects: List[Obj]
    caption: str


@dataclasses.dataclass
class Clip:
    seed: int
    background: Background
    frames: List[FrameState]

    @property
    def captions(self) -> List[str]:
        return [f.caption for f in self.frames]


def _inside(o: Obj) -> bool:
    return o.radius <= o.x <= 1 - o.radius and o.radius <= o.y <= 1 - o.radius


def _gone(o: Obj) -> bool:
    r = o.radius
    return o.x < -r or o.x > 1 + r or o.y < -r or o.y > 1 + r


def _gap(a: Obj, b: Obj) -> float:
    return float(np.hypot(a.x - b.x, a.y - b.y)) - a.radius - b.radius


class World:
    """Simulates one clip; `step()` advances one frame and returns its caption."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seed = seed
        self.objects: List[Obj] = []
        self.entries = 0
        self.idle = 0
        rng = self.rng
        base = rng.choice(BACKGROUNDS)
        accent = tuple(int(max(0, min(255, c + rng.choice((-14, 14))))) for c in base)
        self.background = Background(base, rng.choice(("solid", "vgradient", "hgradient", "stripes", "checker")), accent)

    # --- naming -------------------------------------------------------------------------
    def _ref(self, o: Obj) -> str:
        return "it" if len(self.objects) == 1 else f"the {o.shape}"

    def _mover(self) -> Optional[Obj]:
        return next((o for o in self.objects if o.direction is not None), None)

    # --- events -------------------------------------------------------------------------
    def _advance_mover(self) -> Optional[str]:
        """Moves the moving object one step; returns the caption of a forced event."""
        mover = self._mover()
        if mover is None:
            return None
        dx, dy = DIRECTIONS[mover.direction]
        others = [o for o in self.objects if o is not mover]
        step = SPEED
        if others and _gap(Obj(mover.shape, mover.colour, mover.size, mover.x + dx * step, mover.y + dy * step), others[0]) <= 0:
            lo, hi = 0.0, step
            for _ in range(30):
                mid = (lo + hi) / 2
                probe = Obj(mover.shape, mover.colour, mover.size, mover.x + dx * mid, mover.y + dy * mid)
                if _gap(probe, others[0]) > 0.004:
                    lo = mid
                else:
                    hi = mid
            mover.x += dx * lo
            mover.y += dy * lo
            mover.direction = None
            return f"the {mover.shape} meets the {others[0].shape}"
        mover.x += dx * step
        mover.y += dy * step
        if _gone(mover):
            caption = f"{self._ref(mover)} leaves"
            self.objects.remove(mover)
            return caption
        return None

    def _voluntary_events(self):
        rng = self.rng
        events = []
        mover = self._mover()
        if mover is None and len(self.objects) < 2:
            events.append(("enter", 3.0 if not self.objects else 1.0))
        if mover is None and self.objects:
            events.append(("move", 2.0))
        if mover is not None:
            events.append(("turn", 1.0))
            events.append(("stop", 0.8))
        if self.objects:
            events.append(("colour", 0.7))
            events.append(("size", 0.6))
        names = [e for e, _ in events]
        weights = [w for _, w in events]
        order = []
        while names:
            i = rng.choices(range(len(names)), weights=weights)[0]
            order.append(names.pop(i))
            weights.pop(i)
        return order

    def _try(self, event: str) -> Optional[str]:
        rng = self.rng
        if event == "enter":
            present_shapes = {o.shape for o in self.objects}
            shape = rng.choice([s for s in SHAPES if s not in present_shapes])
            colour = rng.choice(list(COLOURS))
            size = rng.choice(list(SIZES))
            side = rng.choice(list(ENTRY_SIDES))
            r = SIZES[size]
            along = rng.uniform(0.2, 0.8)
            x, y = {"left": (r, along), "right": (1 - r, along), "top": (along, r), "bottom": (along, 1 - r)}[side]
            o = Obj(shape, colour, size, x, y, ENTRY_SIDES[side])
            if any(_gap(o, other) < 0.08 for other in self.objects):
                return None
            # keep the entry lane clear so the newcomer does not meet at once
            if self.objects:
                other = self.objects[0]
                dx, dy = DIRECTIONS[o.direction]
                ahead = Obj(shape, colour, size, x + dx * SPEED * 2, y + dy * SPEED * 2)
                if _gap(ahead, other) < 0.02:
                    return None
            article = "another" if self.entries else "a"
            self.entries += 1
            self.objects.append(o)
            return f"{article} {size} {colour} {shape} enters from the {side}"
        if event == "move":
            o = rng.choice(self.objects)
            if not _inside(o):
                return None
            others = [p for p in self.objects if p is not o]
            if others and rng.random() < 0.5:
                # head for the other object, so that objects meet
                dx, dy = others[0].x - o.x, others[0].y - o.y
                direction = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            else:
                direction = rng.choice(list(DIRECTIONS))
            return self._start_motion(o, direction, "moves")
        if event == "turn":
            o = self._mover()
            if o is None or not _inside(o):
                return None
            direction = rng.choice([d for d in DIRECTIONS if d != o.direction])
            return self._start_motion(o, direction, "turns")
        if event == "stop":
            o = self._mover()
            others = [p for p in self.objects if p is not o]
            if o is None or not _inside(o) or (others and _gap(o, others[0]) < 0.06):
                return None
            o.direction = None
            return f"{self._ref(o)} stops"
        if event == "colour":
            o = rng.choice(self.objects)
            if not _inside(o):
                return None
            o.halo = o.colour
            o.colour = rng.choice([c for c in COLOURS if c != o.colour])
            return f"{self._ref(o)} turns {o.colour}"
        if event == "size":
            o = rng.choice(self.objects)
            new = "small" if o.size == "big" else "big"
            probe = dataclasses.replace(o, size=new)
            others = [p for p in self.objects if p is not o]
            if not _inside(probe) or not _inside(o) or (others and _gap(probe, others[0]) < 0.06):
                return None
            o.halo = o.colour
            o.size = new
            return f"{self._ref(o)} {'grows' if new == 'big' else 'shrinks'}"
        raise ValueError(event)

    def _start_motion(self, o: Obj, direction: str, verb: str) -> Optional[str]:
        dx, dy = DIRECTIONS[direction]
        others = [p for p in self.objects if p is not o]
        probe = Obj(o.shape, o.colour, o.size, o.x + dx * SPEED, o.y + dy * SPEED)
        if others and _gap(probe, others[0]) < 0.03:
            return None
        again = direction in o.recent_directions
        o.recent_directions = (o.recent_directions + (direction,))[-2:]
        o.direction = direction
        o.x, o.y = probe.x, probe.y
        return f"{self._ref(o)} {verb} {direction}" + (" again" if again else "")

    def step(self) -> FrameState:
        for o in self.objects:
            o.halo = None
        caption = self._advance_mover()
        if caption is None:
            # silence is likelier right after an event; the longer it lasts, the likelier an event
            p_event = 0.72 if not self.objects or self.idle < 1 else 0.92
            if self.rng.random() < p_event:
                for event in self._voluntary_events():
                    caption = self._try(event)
                    if caption is not None:
                        break
        self.idle = 0 if caption else self.idle + 1
        snapshot = [dataclasses.replace(o) for o in self.objects]
        return FrameState(snapshot, caption or "")


def make_clip(seed: int, frames: int) -> Clip:
    world = World(seed)
    return Clip(seed, world.background, [world.step() for _ in range(frames)])


# --- rendering ---------------------------------------------------------------------------

def _background(bg: Background, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), bg.base)
    draw = ImageDraw.Draw(img)
    if bg.pattern in ("vgradient", "hgradient"):
        for i in range(size):
            t = i / max(1, size - 1)
            c = tuple(int(round(b * (1 - t) + a * t)) for b, a in zip(bg.base, bg.accent))
            if bg.pattern == "vgradient":
                draw.line([(0, i), (size, i)], fill=c)
            else:
                draw.line([(i, 0), (i, size)], fill=c)
    elif bg.pattern == "stripes":
        w = max(1, size // 8)
        for i in range(0, size, 2 * w):
            draw.rectangle([i, 0, i + w - 1, size], fill=bg.accent)
    elif bg.pattern == "checker":
        w = max(1, size // 4)
        for i in range(0, size, w):
            for j in range(0, size, w):
                if ((i // w) + (j // w)) % 2:
                    draw.rectangle([i, j, i + w - 1, j + w - 1], fill=bg.accent)
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, colour) -> None:
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([x - s, y - s, x + s, y + s], fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + r * 1.02, y + r * 0.8), (x - r * 1.02, y + r * 0.8)], fill=colour)
    else:
        raise ValueError(shape)


def _blend_shape(img: Image.Image, shape: str, x: float, y: float, r: float, colour, alpha: float) -> Image.Image:
    """`img` with a shape laid over it at opacity `alpha` (trail ghosts, change halos)."""
    layer = Image.new("RGB", img.size)
    mask = Image.new("L", img.size, 0)
    _draw_shape(ImageDraw.Draw(mask), shape, x, y, r, int(255 * alpha))
    _draw_shape(ImageDraw.Draw(layer), shape, x, y, r, colour)
    return Image.composite(layer, img, mask)


def render(clip_bg: Background, objects: List[Obj], size: int, supersample: int = 4) -> np.ndarray:
    """Renders one frame as uint8 RGB [size, size, 3], anti-aliased by supersampling."""
    big = size * supersample
    img = _background(clip_bg, big)
    for o in objects:
        r = o.radius * big
        cx, cy = o.x * big, o.y * big
        colour = COLOURS[o.colour]
        if o.halo is not None:
            img = _blend_shape(img, o.shape, cx, cy, r * HALO_SCALE, COLOURS[o.halo], HALO_ALPHA)
        if o.direction is not None:
            dx, dy = DIRECTIONS[o.direction]
            for back, alpha in ((1.3, 0.22), (0.7, 0.45)):
                img = _blend_shape(img, o.shape, cx - dx * r * back, cy - dy * r * back, r, colour, alpha)
        _draw_shape(ImageDraw.Draw(img), o.shape, cx, cy, r, colour)
    if supersample > 1:
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def render_clip(clip: Clip, size: int, supersample: int = 4) -> np.ndarray:
    """All frames of a clip, uint8 [frames, size, size, 3]."""
    return np.stack([render(clip.background, f.objects, size, supersample) for f in clip.frames])
