"""The people's face crops and the HTML page that shows them."""

import html
from pathlib import Path

import numpy as np

from ..io import _atomic_path


def _densest(Xn, members):
    """The member with the highest mean cosine to the others.

    The mean cosine of a unit row to a set is its dot product with the
    set's mean row: O(m d), not the (m, m) matrix of a large person.
    """
    centre = Xn[members].mean(axis=0)
    return members[int(np.argmax(Xn[members] @ centre))]


def _crop_name(rel, sha, box):
    """File name of a face's crop: the photo's stem, the box's corner and the
    start of the content hash (copies of one photo share their crops)."""
    return f"{Path(rel).stem}_{int(box[0])}_{int(box[1])}_{sha[:8]}.jpg"


def _crop(image, box, size=112):
    """The face with a margin of a quarter of its size, ``size`` pixels high."""
    from PIL import Image

    left, top, right, bottom = (int(v) for v in box)
    margin = (bottom - top) // 4
    height, width = image.shape[:2]
    part = image[
        max(0, top - margin) : min(height, bottom + margin + 1),
        max(0, left - margin) : min(width, right + margin + 1),
    ]
    crop = Image.fromarray(part)
    crop.thumbnail((size * 2, size))
    return crop


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>People found by sklearn-ndde</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; }}
h1 {{ font-size: 1.4em; }}
.person {{ display: flex; align-items: center; gap: 1em; padding: 0.5em 0;
  border-bottom: 1px solid #ddd; }}
.who {{ width: 12em; flex: none; }}
.who b {{ display: block; }}
.faces {{ display: flex; flex-wrap: wrap; gap: 4px; }}
.faces img {{ height: 80px; border-radius: 3px; }}
.unassigned {{ background: #f0f0f0; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{summary}</p>
<p>To name a person, write the name in the <code>name</code> column of
<code>people.csv</code> beside this page; the next run keeps it and shows it
here.</p>
{rows}
{skipped}
<script>
for (const img of document.images) {{
  const mark = () => img.dataset.loaded = img.naturalWidth > 0 ? "yes" : "no";
  if (img.complete) mark(); else {{ img.onload = mark; img.onerror = mark; }}
}}
</script>
</body></html>
"""


def _write_index(out_dir, people, unassigned, n_photos, skipped):
    rows = []
    for person, name, faces in people:
        label = html.escape(name) if name else f"person {person}"
        thumbs = "".join(
            f'<img src="{html.escape(src)}" alt="face {i + 1} of {label}" '
            f'title="{html.escape(title)}">'
            for i, (src, title) in enumerate(faces)
        )
        rows.append(
            f'<div class="person" id="person-{person}"><div class="who">'
            f"<b>{label}</b>{len(faces)} face{'s' if len(faces) != 1 else ''}</div>"
            f'<div class="faces">{thumbs}</div></div>'
        )
    if unassigned:
        thumbs = "".join(
            f'<img src="{html.escape(src)}" alt="unassigned face {i + 1}" '
            f'title="{html.escape(title)}">'
            for i, (src, title) in enumerate(unassigned)
        )
        rows.append(
            '<div class="person unassigned" id="unassigned"><div class="who">'
            f"<b>unassigned</b>{len(unassigned)} face"
            f"{'s' if len(unassigned) != 1 else ''}</div>"
            f'<div class="faces">{thumbs}</div></div>'
        )
    n_faces = sum(len(f) for _, _, f in people) + len(unassigned)
    summary = (
        f"{n_faces} faces in {n_photos} photos: {len(people)} people, "
        f"{len(unassigned)} faces unassigned"
        + (f", {len(skipped)} files not read (listed below)" if skipped else "")
        + "."
    )
    listed = ""
    if skipped:
        items = "".join(
            f"<li>{html.escape(Path(rel).as_posix())}: {html.escape(reason)}</li>"
            for rel, reason in skipped
        )
        listed = f'<h2 id="not-read">Files not read</h2><ul>{items}</ul>'
    page = _PAGE.format(
        title="People",
        summary=html.escape(summary),
        rows="\n".join(rows),
        skipped=listed,
    )
    with _atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
