"""CI's plumbing agrees with what the README tells a new user."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_packages() -> list[str]:
    block = re.search(r"DEBIAN_PACKAGES=\(\n(.*?)\n\)", (ROOT / ".ci" / "run").read_text(), re.S)
    return block.group(1).split()


def readme_packages() -> list[str]:
    block = re.search(r"```bash\napt-get install (.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return block.group(1).replace("\\", " ").split()


def test_readme_lists_the_packages_ci_installs():
    assert readme_packages() == ci_packages()


def test_the_packages_a_fresh_machine_missed_are_listed():
    # fontconfig finds TeX Gyre Pagella only through fonts-texgyre; torch.compile needs g++;
    # the docs env fetches MathJax with npm
    assert {"fonts-texgyre", "g++", "nodejs", "npm"} <= set(ci_packages())
