"""TeX in paper titles rendered as Unicode: each conversion texmath.py promises."""

from __future__ import annotations

import pytest

from newsletter.digest.texmath import plain_title


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        # the example in plain_title's docstring, and symbols in and out of math mode
        (r"LLM$\times$MapReduce", "LLM×MapReduce"),
        (r"5$\times$ faster, $\leq$ 3 GB, $\pm$1, $\approx$2", "5× faster, ≤ 3 GB, ±1, ≈2"),
        (r"$\infty$-Bench: A$\to$B $\Rightarrow$ C", "∞-Bench: A→B ⇒ C"),
        (r"$\alpha$-Fold, $\Delta$ and $\delta$, $\omega$", "α-Fold, Δ and δ, ω"),
        # wrappers keep their text, nested ones too
        (r"\textbf{Bold} and $\mathcal{O}$", "Bold and O"),
        (r"$\mathbf{\text{Nested}}$ idea", "Nested idea"),
        # superscripts and subscripts Unicode has; others keep their text
        ("GS^3", "GS³"),
        (r"GS$^3$", "GS³"),
        (r"H$_2$O and x_{12}", "H₂O and x₁₂"),
        (r"$x^{n+1}$", "xⁿ⁺¹"),
        (r"$x^{abc}$ and $y_{ab}$", "x^abc and y_ab"),
        # escaped specials are literal characters
        (r"100\% accurate R\&D for \$5 in C\#", "100% accurate R&D for $5 in C#"),
        (r"a\_b", "a_b"),
        (r"$\alpha$ for \$5", "α for $5"),
        (r"Sets $\{x\}$", "Sets {x}"),
        # spacing commands and runs of spaces become one space
        (r"a\,b a\;b a  \quad b", "a b a b a b"),
        # a lone dollar is money, a pair is math mode
        ("costs $5", "costs $5"),
        (r"$\alpha$ costs", "α costs"),
        # unknown commands are kept as written, not dropped
        (r"$\foo$ bar", r"\foo bar"),
        # titles without TeX are returned untouched
        ("snake_case_name {kept}", "snake_case_name {kept}"),
        # dollars and braces are the title's own without a command, script or math span
        ("From $5 to $10", "From $5 to $10"),
        ("Templates: {{ x }} and ${y}", "Templates: {{ x }} and ${y}"),
        ("$$", "$$"),
    ],
)
def test_plain_title(title: str, shown: str) -> None:
    assert plain_title(title) == shown
