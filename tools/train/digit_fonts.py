"""Fonts for printed digits: which Debian packages provide them, their licences, and the fixed
split of font FAMILIES into train / validation / test that tools/train/train_printed.py and
tools/train/render_printed_digits.py share.

Families are grouped by design, not by name: clones and derivatives of one design sit in one
group so that a "test" font never has a twin in training (Nimbus Sans, TeX Gyre Heros and
FreeSans are all URW's Helvetica; Liberation 2 is Croscore's Arimo/Tinos/Cousine; Hack is
DejaVu Sans Mono; Noto Sans descends from Open Sans). The split is by group and fixed here, by
hand, so that each split holds sans, serif and monospaced designs; it never depends on what a
machine happens to have installed beyond these packages.

    python tools/train/digit_fonts.py            # list the faces per split (installs missing packages)
    python tools/train/digit_fonts.py --install test   # only install one split's packages (CI)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple


class Group(NamedTuple):
    name: str
    split: str                 # train | val | test
    packages: tuple            # Debian packages
    families: tuple            # fontconfig family names (exact, first family name)
    licence: str


GROUPS: List[Group] = [
    # ---- test: never seen in training nor used to choose settings ---------------------------
    Group("DejaVu / Hack", "test", ("fonts-dejavu-core", "fonts-dejavu-extra", "fonts-hack"),
          ("DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif", "Hack"),
          "Bitstream Vera licence + public domain (DejaVu); MIT + Bitstream Vera (Hack)"),
    Group("Lato", "test", ("fonts-lato",), ("Lato",), "SIL OFL 1.1"),
    Group("EB Garamond", "test", ("fonts-ebgaramond",), ("EB Garamond",), "SIL OFL 1.1"),
    Group("JetBrains Mono", "test", ("fonts-jetbrains-mono",), ("JetBrains Mono",),
          "Apache-2.0 (as the Debian package states; upstream now SIL OFL 1.1)"),
    Group("Go", "test", ("fonts-go",), ("Go", "Go Medium", "Go Mono"), "BSD-3-Clause"),
    Group("Cantarell", "test", ("fonts-cantarell",), ("Cantarell",), "SIL OFL 1.1 (parts CC0-1.0)"),
    Group("Charis SIL", "test", ("fonts-sil-charis",), ("Charis SIL",),
          "SIL OFL 1.1 with Reserved Font Name"),
    Group("Courier Prime", "test", ("fonts-courier-prime",),
          ("Courier Prime", "Courier Prime Code", "Courier Prime Sans"), "SIL OFL 1.1"),
    Group("Linux Libertine / Biolinum", "test", ("fonts-linuxlibertine",),
          ("Linux Libertine O", "Linux Biolinum O", "Linux Libertine Display O",
           "Linux Libertine Mono O"), "GPL-2+ with font exception / SIL OFL 1.1"),
    Group("Switzera ADF", "test", ("fonts-adf-switzera",), ("Switzera ADF",),
          "GPL-2+ with font exception (Arkandis ADF)"),
    # ---- validation: chooses the recipe's settings --------------------------------------------
    Group("Roboto", "val", ("fonts-roboto-unhinted",), ("Roboto", "Roboto Condensed"),
          "Apache-2.0"),
    Group("Carlito", "val", ("fonts-crosextra-carlito",), ("Carlito",), "SIL OFL 1.1"),
    Group("Cabin", "val", ("fonts-cabin",), ("Cabin",), "SIL OFL 1.1"),
    Group("PT Sans / Serif / Mono", "val", ("fonts-paratype",),
          ("PT Sans", "PT Sans Caption", "PT Sans Narrow", "PT Serif", "PT Serif Caption",
           "PT Mono"), "ParaType Free Font Licence (OFL-like)"),
    Group("Old Standard TT", "val", ("fonts-oldstandard",), ("Old Standard TT",), "SIL OFL 1.0"),
    Group("Anonymous Pro", "val", ("fonts-anonymous-pro",), ("Anonymous Pro",), "SIL OFL 1.1"),
    Group("Quicksand", "val", ("fonts-quicksand",),
          ("Quicksand", "Quicksand Light", "Quicksand Medium"), "SIL OFL 1.1"),
    Group("Gentium", "val", ("fonts-sil-gentium",), ("Gentium", "GentiumAlt"), "SIL OFL 1.1"),
    Group("Tribun ADF", "val", ("fonts-adf-tribun",), ("Tribun ADF Std",),
          "GPL-2+ with font exception (Arkandis ADF)"),
    # ---- train ---------------------------------------------------------------------------------
    Group("URW base35 / TeX Gyre / FreeFont", "train",
          ("fonts-urw-base35", "fonts-texgyre", "fonts-freefont-ttf"),
          ("Nimbus Sans", "Nimbus Sans Narrow", "Nimbus Roman", "Nimbus Mono PS", "C059", "P052",
           "URW Bookman", "URW Gothic", "Z003", "TeX Gyre Adventor", "TeX Gyre Bonum",
           "TeX Gyre Chorus", "TeX Gyre Cursor", "TeX Gyre Heros", "TeX Gyre Heros Cn",
           "TeX Gyre Pagella", "TeX Gyre Schola", "TeX Gyre Termes", "FreeSans", "FreeSerif",
           "FreeMono"),
          "AGPL-3 with font exception (URW); GUST Font Licence (TeX Gyre); GPL-3+ with font "
          "exception (FreeFont)"),
    Group("Liberation / Croscore", "train", ("fonts-liberation", "fonts-croscore"),
          ("Liberation Sans", "Liberation Sans Narrow", "Liberation Serif", "Liberation Mono",
           "Arimo", "Tinos", "Cousine"), "GPL-2 with font exception (Liberation 1.x, Debian); SIL OFL 1.1 (Croscore)"),
    Group("Noto / Open Sans", "train", ("fonts-noto-core", "fonts-open-sans"),
          ("Noto Sans", "Noto Serif", "Noto Sans Mono", "Noto Sans Display", "Noto Serif Display",
           "Open Sans", "Open Sans Condensed"), "SIL OFL 1.1 (Noto); Apache-2.0 (Open Sans)"),
    Group("Caladea", "train", ("fonts-crosextra-caladea",), ("Caladea",), "Apache-2.0 / SIL OFL 1.1"),
    Group("Fira Code", "train", ("fonts-firacode",), ("Fira Code",), "SIL OFL 1.1"),
    Group("Inconsolata", "train", ("fonts-inconsolata",), ("Inconsolata",), "SIL OFL 1.0"),
    Group("Junicode", "train", ("fonts-junicode",), ("Junicode Two Beta",), "SIL OFL 1.1"),
    Group("GFS Didot", "train", ("fonts-gfs-didot",), ("GFS Didot",), "SIL OFL 1.1"),
    Group("Comfortaa", "train", ("fonts-comfortaa",), ("Comfortaa",), "SIL OFL 1.1"),
    Group("Andika", "train", ("fonts-sil-andika",), ("Andika",), "SIL OFL 1.1 with Reserved Font Name"),
    Group("League Spartan", "train", ("fonts-league-spartan",), ("League Spartan",),
          "SIL OFL 1.1"),
    Group("Bebas Neue", "train", ("fonts-bebas-neue",), ("Bebas Neue",), "SIL OFL 1.1"),
    Group("STIX", "train", ("fonts-stix",), ("STIXGeneral", "STIX"), "SIL OFL 1.1"),
    Group("Yanone Kaffeesatz", "train", ("fonts-yanone-kaffeesatz",), ("Yanone Kaffeesatz",),
          "SIL OFL 1.1"),
    Group("DSEG7 (seven-segment displays)", "train", ("fonts-dseg",),
          ("DSEG7 Classic", "DSEG7 Modern"), "SIL OFL 1.1"),
    Group("OCR-A / OCR-B", "train", ("fonts-ocr-a", "fonts-ocr-b"),
          ("OCRA", "OCRABold", "OCRACondensed", "OCRAItalic", "OCR B"),
          "public domain (OCR-A); GNU all-permissive / X11 (OCR-B, Matthew Skala)"),
    Group("Handwriting-like (Humor Sans, DkgHandwriting, Breip, femkeklaver, Isabella)", "train",
          ("fonts-humor-sans", "fonts-dkg-handwriting", "fonts-breip", "fonts-femkeklaver",
           "fonts-isabella"),
          ("Humor Sans", "DkgHandwriting", "Breip", "femkeklaver", "Isabella"),
          "SIL OFL 1.1 (Humor Sans, DkgHandwriting); SIL OFL 1.0 (Breip); LGPL-2+ (Isabella); "
          "CC-BY-SA-3.0 (femkeklaver)"),
    Group("Lobster Two", "train", ("fonts-lobstertwo",), ("Lobster Two",), "SIL OFL 1.1"),
    Group("ADF (Accanthis, Baskervald, Gillius, Ikarius, Libris, Mekanus, Oldania, Romande, "
          "Universalis, Verana)", "train",
          ("fonts-adf-accanthis", "fonts-adf-baskervald", "fonts-adf-gillius",
           "fonts-adf-ikarius", "fonts-adf-libris", "fonts-adf-mekanus", "fonts-adf-oldania",
           "fonts-adf-romande", "fonts-adf-universalis", "fonts-adf-verana"),
          ("Accanthis ADF Std", "Accanthis ADF Std No2", "Accanthis ADF Std No3",
           "Baskervald ADF Std", "Gillius ADF", "Gillius ADF No2", "Ikarius ADF Std",
           "Ikarius ADF No2 Std", "Libris ADF Std", "Mekanus ADF Std", "Oldania ADF Std",
           "Romande ADF Std", "Romande ADF No2 Std", "Universalis ADF Std", "Verana Sans",
           "Verana Sans Demi", "Verana Sans Medium"),
          "GPL-2+ with font exception (Arkandis ADF)"),
]

SPLITS = ("train", "val", "test")


def packages(split: str = None) -> List[str]:
    return sorted({p for g in GROUPS if split in (None, g.split) for p in g.packages})


def ensure_packages(split: str = None, quiet: bool = False) -> None:
    """apt-get install the Debian packages that are missing (needs root and apt; a machine
    without them keeps the fonts it has, and the listing says what is missing)."""
    missing = []
    for p in packages(split):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True,
                           text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"warning: font packages missing and apt-get unavailable (not root?): "
              f"{' '.join(missing)}", file=sys.stderr)
        return
    out = None if not quiet else subprocess.DEVNULL
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       env=env, stdout=out)
    if r.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(["apt-get", "update"], env=env, stdout=out)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       env=env, stdout=out, check=True)
    subprocess.run(["fc-cache"], stdout=subprocess.DEVNULL)


class Face(NamedTuple):
    path: str
    index: int        # face index inside a collection (.ttc)
    family: str
    style: str
    group: str
    split: str


def _fc_faces() -> List[tuple]:
    fmt = "%{file}\t%{index}\t%{family[0]}\t%{style[0]}\n"
    out = subprocess.run(["fc-list", "--format", fmt], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].lower().endswith((".ttf", ".otf", ".ttc")):
            continue
        rows.append((parts[0], int(parts[1] or 0), parts[2], parts[3]))
    return sorted(set(rows))


def _signature(path: str, index: int):
    """A hash of the ten digits' bitmaps at 32 px, or None when the face lacks digits (its
    digits render as .notdef, or as blanks, or all alike)."""
    import numpy as np  # here, not at the top: `--install` runs before any package (CI)
    from PIL import ImageFont

    try:
        f = ImageFont.truetype(path, 32, index=index)
        masks = []
        for ch in "0123456789\U0010fffd":
            m = f.getmask(ch)
            masks.append((m.size, bytes(np.asarray(m, np.uint8).tobytes())))
    except (OSError, ValueError):
        return None
    notdef = masks[-1]
    digits = masks[:-1]
    if any(d == notdef or d[0][0] < 2 or d[0][1] < 8 for d in digits):
        return None
    if len({d for d in digits}) < 10:
        return None
    return hashlib.sha1(repr(digits).encode()).hexdigest()


def faces(split: str = None) -> List[Face]:
    """The installed faces of the listed families, in a fixed order (split, group, family,
    style, file), without faces whose digits duplicate a face listed before them (train first,
    then val, then test: a test face with a training twin's digits is dropped)."""
    by_family: Dict[str, Group] = {f: g for g in GROUPS for f in g.families}
    found = []
    for path, index, family, style in _fc_faces():
        g = by_family.get(family)
        if g is None:
            continue
        found.append(Face(path, index, family, style, g.name, g.split))
    order = {s: i for i, s in enumerate(SPLITS)}
    gorder = {g.name: i for i, g in enumerate(GROUPS)}
    found.sort(key=lambda f: (order[f.split], gorder[f.group], f.family, f.style, f.path,
                              f.index))
    seen, keep = set(), []
    for f in found:
        sig = _signature(f.path, f.index)
        if sig is None or sig in seen:
            continue
        seen.add(sig)
        keep.append(f)
    return [f for f in keep if split in (None, f.split)]


def licence_table() -> str:
    """Markdown rows: group | split | Debian packages | licence."""
    rows = ["| font group | split | Debian packages | licence |", "| --- | --- | --- | --- |"]
    for g in GROUPS:
        rows.append(f"| {g.name} | {g.split} | {', '.join(g.packages)} | {g.licence} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--install" and sys.argv[2] in SPLITS:
        ensure_packages(sys.argv[2], quiet=True)  # CI: the fonts tests/_fields.py renders
        sys.exit(0)
    ensure_packages()
    allf = faces()
    for s in SPLITS:
        fs = [f for f in allf if f.split == s]
        fams = sorted({f.family for f in fs})
        print(f"{s}: {len(fs)} faces, {len(fams)} families: {', '.join(fams)}")
