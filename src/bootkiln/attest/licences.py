"""Licences from Debian's machine-readable copyright files (DEP-5), as SPDX licence expressions.

A package whose /usr/share/doc/<package>/copyright is not machine-readable, or absent, has no
declared licence here (NOASSERTION in the SBOM): bootkiln never guesses. Debian's short names
that are SPDX identifiers under another spelling are mapped; any other name becomes a
LicenseRef-, which the SBOM declares with a pointer to the copyright file.
"""

from __future__ import annotations

import re

FORMAT_PREFIX = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0"
FORMAT_PATTERN = re.compile(r"^Format:\s*https?://www\.debian\.org/doc/packaging-manuals/copyright-format/1\.0/?",
                            re.IGNORECASE)

# Debian short names (lower-cased) whose SPDX identifier is spelt differently.
DEBIAN_TO_SPDX = {
    "expat": "MIT", "mit": "MIT", "apache-2.0": "Apache-2.0", "apache-2": "Apache-2.0", "isc": "ISC",
    "zlib": "Zlib", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
    "cc0-1.0": "CC0-1.0", "cc0": "CC0-1.0", "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "artistic": "Artistic-1.0-Perl",
    "artistic-2.0": "Artistic-2.0", "openssl": "OpenSSL", "python-2.0": "Python-2.0", "psf-2": "Python-2.0",
    "unicode-dfs-2016": "Unicode-DFS-2016", "x11": "X11", "curl": "curl", "bzip2-1.0.6": "bzip2-1.0.6",
    "ssleay": "SSLeay", "unlicense": "Unlicense", "0bsd": "0BSD", "wtfpl": "WTFPL", "ofl-1.1": "OFL-1.1",
    "fsfap": "FSFAP", "fsful": "FSFUL", "fsfullr": "FSFULLR", "gfdl-1.3": "GFDL-1.3-only",
    "gfdl-1.3+": "GFDL-1.3-or-later", "gfdl-1.2": "GFDL-1.2-only", "gfdl-1.2+": "GFDL-1.2-or-later",
    "agpl-3": "AGPL-3.0-only", "agpl-3+": "AGPL-3.0-or-later", "lgpl-2": "LGPL-2.0-only",
    "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.0": "LGPL-2.0-only", "lgpl-2.0+": "LGPL-2.0-or-later", "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later", "lgpl-3": "LGPL-3.0-only", "lgpl-3+": "LGPL-3.0-or-later",
    "lgpl-3.0": "LGPL-3.0-only", "lgpl-3.0+": "LGPL-3.0-or-later", "gpl-1": "GPL-1.0-only",
    "gpl-1+": "GPL-1.0-or-later", "gpl": "GPL-1.0-or-later", "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later",
    "gpl-2.0": "GPL-2.0-only", "gpl-2.0+": "GPL-2.0-or-later", "gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later",
    "gpl-3.0": "GPL-3.0-only", "gpl-3.0+": "GPL-3.0-or-later", "gpl-2.0-only": "GPL-2.0-only",
    "gpl-2.0-or-later": "GPL-2.0-or-later", "gpl-3.0-only": "GPL-3.0-only", "gpl-3.0-or-later": "GPL-3.0-or-later",
    "lgpl-2.1-only": "LGPL-2.1-only", "lgpl-2.1-or-later": "LGPL-2.1-or-later", "mit-0": "MIT-0",
    "boost-1.0": "BSL-1.0", "bsl-1.0": "BSL-1.0", "ipl-1.0": "IPL-1.0", "epl-1.0": "EPL-1.0", "epl-2.0": "EPL-2.0",
    "beerware": "Beerware", "libpng": "Libpng", "libpng-2.0": "libpng-2.0", "ijg": "IJG", "ntp": "NTP",
    "tcl": "TCL", "cc-by-3.0": "CC-BY-3.0", "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-3.0": "CC-BY-SA-3.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0", "cc-by-sa-2.0": "CC-BY-SA-2.0", "cc-by-2.0": "CC-BY-2.0", "gd": "GD",
    "sleepycat": "Sleepycat", "hpnd": "HPND", "bsd-2-clause-netbsd": "BSD-2-Clause-NetBSD", "info-zip": "Info-ZIP",
    "imagemagick": "ImageMagick", "bsd-3-clause-clear": "BSD-3-Clause-Clear", "vim": "Vim", "ruby": "Ruby",
    "php-3.01": "PHP-3.01", "postgresql": "PostgreSQL", "w3c": "W3C", "zpl-2.1": "ZPL-2.1", "mpl-1.0": "MPL-1.0",
    "x11-distribute-modifications-variant": "X11-distribute-modifications-variant",
}
OPERATOR = re.compile(r"\s+(or|and)\s+", re.IGNORECASE)


def licence_ref(name: str) -> str:
    """A LicenseRef- for a name SPDX does not know (idstring: letters, digits, '.' and '-')."""
    return "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") or "unnamed")


def spdx_id(name: str) -> str:
    cleaned = name.strip().strip(",()").strip()
    return DEBIAN_TO_SPDX.get(cleaned.lower()) or licence_ref(cleaned)


def spdx_expression(debian: str) -> str | None:
    """A DEP-5 License short-name line ('GPL-2+ or Artistic', 'LGPL-2.1+ with X exception') as SPDX."""
    text = re.sub(r"[(),]", " ", debian).strip()
    if not text:
        return None
    parts = OPERATOR.split(text)
    terms = [spdx_id(part) for part in parts[0::2]]
    operators = [part.upper() for part in parts[1::2]]
    expression = terms[0]
    for operator, term in zip(operators, terms[1:], strict=True):
        expression += f" {operator} {term}"
    return expression


def _field_lines(text: str) -> list[tuple[str, str]]:
    """(field, first-line value) for the fields that matter, in order; blank lines end a paragraph."""
    fields = []
    for line in text.splitlines():
        if not line.strip():
            fields.append(("", ""))
            continue
        if line[0] in " \t":
            continue
        name, colon, value = line.partition(":")
        if colon and name in ("Format", "Files", "License"):
            fields.append((name, value.strip()))
    return fields


def licences_from_copyright(text: str) -> str | None:
    """The SPDX expression of a machine-readable copyright file's Files paragraphs; None if not DEP-5."""
    if not any(FORMAT_PATTERN.match(line) for line in text.splitlines()[:5]):
        return None
    found: list[str] = []
    standalone: list[str] = []
    in_files = False
    for name, value in _field_lines(text):
        if name == "":
            in_files = False
        elif name == "Files":
            in_files = True
        elif name == "License" and value:
            (found if in_files else standalone).append(value)
            in_files = False
    expressions = []
    for value in found or standalone:
        expression = spdx_expression(value)
        if expression and expression not in expressions:
            expressions.append(expression)
    if not expressions:
        return None
    if len(expressions) == 1:
        return expressions[0]
    return " AND ".join(f"({e})" if " " in e else e for e in sorted(expressions))


def licence_refs(expression: str) -> set[str]:
    return set(re.findall(r"LicenseRef-[A-Za-z0-9.-]+", expression))
