"""The core speaks of roles, not of one CRM's names: Salesforce's (and Dataverse's) field and
error names, and imports of a connector, appear only under the connectors' own packages and
the provider registry."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRM = ROOT / "libs/common/src/crmsync/common/crm"
# The one place that knows every CRM, and the connectors themselves.
KNOWING = (CRM / "salesforce", CRM / "dynamics", CRM / "providers.py")
# Resolves the Salesforce default mapping's old name on first use, while its last importers move.
MOVING = {("libs/common/src/crmsync/common/domain/mapping.py", "from crmsync.common.crm import salesforce")}

CRM_NAMES = re.compile(
    r"SystemModstamp|IsConverted|ConvertedContactId|HasOptedOutOfEmail|DeletedFeedWindowExceeded|Owner\.Name"
    # and Dataverse's
    r"|ChangeTokenExpired|DynamicsConnector|DynamicsOptions|\bmodifiedon\b|emailaddress1|\bstatecode\b"
)
CONNECTOR_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+crmsync\.common\.crm\.(?:salesforce|dynamics)\b"
    r"|^\s*from\s+crmsync\.common\.crm\s+import\s+.*\b(?:salesforce|dynamics)\b"
)


def _core_sources() -> list[Path]:
    roots = [ROOT / "libs/common/src", *sorted((ROOT / "services").glob("*/src"))]
    return [
        path
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if not any(path == k or k in path.parents for k in KNOWING)
    ]


def _found(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            hit = CRM_NAMES.search(line) or CONNECTOR_IMPORT.search(line)
            if hit and (name, line.strip()) not in MOVING:
                found.append(f"{name}:{number}: {hit.group(0).strip()}")
    return found


def test_the_core_names_no_crm_s_field_error_or_connector() -> None:
    found = _found(_core_sources())
    assert not found, "CRM-specific names outside the connectors:\n" + "\n".join(found)


def test_the_scan_covers_the_services_and_the_common_library_but_not_the_connectors() -> None:
    sources = {str(p.relative_to(ROOT)) for p in _core_sources()}
    assert "libs/common/src/crmsync/common/crm/factory.py" in sources
    assert "libs/common/src/crmsync/common/domain/mapping_rules.py" in sources
    assert any(s.startswith("services/puller/src/") for s in sources)
    assert any(s.startswith("services/mapping-api/src/") for s in sources)
    assert not any(
        "/crm/salesforce/" in s or "/crm/dynamics/" in s or s.endswith("crm/providers.py") for s in sources
    )
    # What the scan finds in a connector's own code.
    assert _found([CRM / "salesforce/_roles.py"]) and _found([CRM / "providers.py"])
    assert _found([CRM / "dynamics/_entities.py"])
