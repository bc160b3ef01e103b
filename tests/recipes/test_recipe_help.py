"""Every recipe option is documented in --help, with its default (issue #7: "--help documents them")."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from _cli import DefaultsHelpFormatter, recipe_parser
from conftest import load_recipe

RECIPE_NAMES = ["simsiam_cifar", "simsiam_lightning", "linear_eval", "siamese_pairs", "triplet_retrieval"]


def _options(parser: argparse.ArgumentParser):
    return [action for action in parser._actions if action.option_strings and action.dest != "help"]


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_every_option_has_help_that_shows_its_default(name: str) -> None:
    parser = load_recipe(name).build_parser()
    formatter = parser._get_formatter()
    for action in _options(parser):
        assert action.help and action.help.strip(), f"{name}: {action.option_strings[0]} has no help"
        text = formatter._expand_help(action)
        if action.default not in (None, False, [], {}):
            assert f"default: {action.default}" in text, f"{name}: {action.option_strings[0]}: {text!r}"
        # None means "derived at run time": the help must then say what it becomes, not "(default: None)".
        assert "(default: None)" not in text and "(default: [])" not in text and "(default: {})" not in text


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_help_exits_zero_and_names_the_paper_defaults(name: str) -> None:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        load_recipe(name).parse_args(["--help"])
    assert exit_info.value.code == 0
    if name in ("simsiam_cifar", "simsiam_lightning"):  # the paper's Appendix D recipe, as the user reads it
        for fragment in ("default 800", "default 512", "(default: 0.03)", "(default: 0.9)", "(default: 0.0005)",
                         "(default: 2048)", "(default: 0.2)"):
            assert fragment in " ".join(stdout.getvalue().split()), fragment


def test_formatter_keeps_a_stated_default_and_skips_none_and_false() -> None:
    parser = recipe_parser("First paragraph.\n\nSecond paragraph.")
    parser.add_argument("--given", type=int, default=3, help="a number")
    parser.add_argument("--stated", type=int, default=4, help="a number (default: four)")
    parser.add_argument("--derived", type=int, default=None, help="found at run time")
    parser.add_argument("--flag", action="store_true", help="a switch")
    formatter = parser._get_formatter()
    assert isinstance(formatter, DefaultsHelpFormatter) and parser.description == "First paragraph."
    texts = {action.dest: formatter._expand_help(action) for action in _options(parser)}
    assert texts == {"given": "a number (default: 3)", "stated": "a number (default: four)",
                     "derived": "found at run time", "flag": "a switch"}
