"""Render a `tmux capture-pane -e -p` capture (text with ANSI SGR colours)
to a PNG, for the README's screenshot. Needs Pillow and DejaVu Sans Mono.

    tmux capture-pane -e -p -t SESSION > capture.ansi
    python3 docs/screenshot.py capture.ansi Assets/dashboard.png
"""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

BASE = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229)]
BRIGHT = [(102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255)]
FG, BG = (220, 220, 220), (24, 24, 24)


def xterm256(n):
    if n < 8:
        return BASE[n]
    if n < 16:
        return BRIGHT[n - 8]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    level = 8 + (n - 232) * 10
    return (level, level, level)


def parse(line):
    """Yields (char, fg, bg, bold) for one line of the capture."""
    fg, bg, bold, reverse = FG, BG, False, False
    pos = 0
    for match in re.finditer(r"\x1b\[([0-9;]*)m|([^\x1b]+)", line):
        if match.group(2) is not None:
            for ch in match.group(2):
                f, b = (bg, fg) if reverse else (fg, bg)
                yield ch, f, b, bold
            continue
        codes = [int(c) if c else 0 for c in match.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bg, bold, reverse = FG, BG, False, False
            elif c == 1:
                bold = True
            elif c == 7:
                reverse = True
            elif c in (22,):
                bold = False
            elif c == 27:
                reverse = False
            elif 30 <= c <= 37:
                fg = BASE[c - 30]
            elif 90 <= c <= 97:
                fg = BRIGHT[c - 90]
            elif 40 <= c <= 47:
                bg = BASE[c - 40]
            elif 100 <= c <= 107:
                bg = BRIGHT[c - 100]
            elif c == 39:
                fg = FG
            elif c == 49:
                bg = BG
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                if c == 38:
                    fg = xterm256(codes[i + 2])
                else:
                    bg = xterm256(codes[i + 2])
                i += 2
            i += 1


def main(source, target):
    lines = open(source, encoding="utf-8", errors="replace").read().rstrip("\n").split("\n")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 14)
    bold_font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf", 14)
    cell_w = int(font.getlength("M"))
    cell_h = 18
    width = max(sum(1 for _ in parse(line)) for line in lines)
    image = Image.new("RGB", (width * cell_w + 16, len(lines) * cell_h + 16), BG)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        for col, (ch, fg, bg, bold) in enumerate(parse(line)):
            x, y = 8 + col * cell_w, 8 + row * cell_h
            if bg != BG:
                draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=bg)
            if ch != " ":
                draw.text((x, y + 1), ch, fill=fg, font=bold_font if bold else font)
    image.save(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
