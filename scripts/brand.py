"""Draw the integration's brand images: a speech bubble holding a waveform.

Writes ``custom_components/tts_ai/brand/{icon,logo}{,@2x}.png`` (transparent
PNG; icon square, logo the icon plus the "TTS.ai" wordmark), the sizes Home
Assistant's brands repository asks for. Run: ``.venv/bin/python scripts/brand.py``.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BRAND_DIR = Path(__file__).resolve().parent.parent / "custom_components/tts_ai/brand"
BLUE = (37, 99, 235, 255)
WHITE = (255, 255, 255, 255)
# Bar heights of the waveform, as a share of the bubble's inner height.
WAVEFORM = (0.30, 0.62, 1.0, 0.74, 0.42)
# Shapes are drawn this many times larger, then scaled down: smooth edges.
SUPERSAMPLE = 4


def draw_icon(size: int) -> Image.Image:
    """Return the square icon: a blue bubble with a tail, white waveform bars."""
    big = size * SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    margin = big * 0.06
    bubble = (margin, margin, big - margin, big * 0.80)
    draw.rounded_rectangle(bubble, radius=big * 0.18, fill=BLUE)
    tail_x = big * 0.26
    draw.polygon(
        [
            (tail_x, bubble[3] - big * 0.05),
            (tail_x + big * 0.22, bubble[3] - big * 0.05),
            (tail_x - big * 0.04, big - margin),
        ],
        fill=BLUE,
    )

    inner_top, inner_bottom = bubble[1] + big * 0.13, bubble[3] - big * 0.13
    centre_y = (inner_top + inner_bottom) / 2
    bar_width = big * 0.085
    gap = big * 0.055
    total = len(WAVEFORM) * bar_width + (len(WAVEFORM) - 1) * gap
    left = (big - total) / 2
    for index, share in enumerate(WAVEFORM):
        half = (inner_bottom - inner_top) * share / 2
        x = left + index * (bar_width + gap)
        draw.rounded_rectangle(
            (x, centre_y - half, x + bar_width, centre_y + half),
            radius=bar_width / 2,
            fill=WHITE,
        )
    return image.resize((size, size), Image.Resampling.LANCZOS)


def draw_logo(height: int) -> Image.Image:
    """Return the logo: the icon, then the wordmark in the same blue."""
    icon = draw_icon(height)
    font = ImageFont.load_default(size=int(height * 0.46))
    text = "TTS.ai"
    left, top, right, bottom = font.getbbox(text)
    gap = int(height * 0.12)
    width = height + gap + (right - left) + int(height * 0.04)
    logo = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    logo.alpha_composite(icon)
    # Centre the text on the bubble (the icon's upper 80 %), not on the tail.
    text_y = int(height * 0.43 - (top + bottom) / 2)
    ImageDraw.Draw(logo).text((height + gap - left, text_y), text, font=font, fill=BLUE)
    return logo


def main() -> None:
    """Write all four images."""
    BRAND_DIR.mkdir(parents=True, exist_ok=True)
    draw_icon(256).save(BRAND_DIR / "icon.png", optimize=True)
    draw_icon(512).save(BRAND_DIR / "icon@2x.png", optimize=True)
    draw_logo(256).save(BRAND_DIR / "logo.png", optimize=True)
    draw_logo(512).save(BRAND_DIR / "logo@2x.png", optimize=True)
    for path in sorted(BRAND_DIR.glob("*.png")):
        with Image.open(path) as image:
            print(f"{path.name}: {image.size[0]}x{image.size[1]} {image.mode}")


if __name__ == "__main__":
    main()
