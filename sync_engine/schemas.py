"""Each connector's knowledge of its vendor's objects, turned into the mapping layer's schemas.

Mappings may not import connectors (DESIGN.md §1); this composition-root module reads the
connectors' tables and hands :func:`schema_for` to the spec compiler.
"""

from __future__ import annotations

from functools import cache

from connectors.nav.schema import OBJECT_FIELDS as NAV_FIELDS
from connectors.nav.schema import REQUIRED_ON_CREATE as NAV_REQUIRED
from connectors.quickbooks.schema import ENTITY_FIELDS, REQUIRED_ON_CREATE
from connectors.salesforce.schema import CUSTOM_SUFFIXES, object_fields, relationship_names
from mappings.schema import ObjectSchema


@cache
def schema_for(system: str, obj: str) -> ObjectSchema | None:
    """The schema of ``obj`` in ``system`` (``salesforce``, ``quickbooks``, ``nav``), or None if unknown."""
    if system == "salesforce":
        fields = object_fields(obj)
        if fields is None:
            return None
        names = frozenset(fields) | frozenset(relationship_names(fields))
        return ObjectSchema(system, obj, names, open_suffixes=CUSTOM_SUFFIXES)
    if system == "quickbooks" and obj in ENTITY_FIELDS:
        required = frozenset(REQUIRED_ON_CREATE.get(obj, ()))
        return ObjectSchema(system, obj, frozenset(ENTITY_FIELDS[obj]), required=required)
    if system == "nav" and obj in NAV_FIELDS:
        return ObjectSchema(
            system, obj, frozenset(NAV_FIELDS[obj]), required=frozenset(NAV_REQUIRED.get(obj, ()))
        )
    return None
