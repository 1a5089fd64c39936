"""Each connector's knowledge of its vendor's objects, turned into the mapping layer's schemas.

Mappings may not import connectors (DESIGN.md §1); this composition-root module reads the
connectors' tables and hands :func:`schema_for` to the spec compiler.
"""

from __future__ import annotations

from functools import cache

from connectors.nav.schema import CODEUNITS as NAV_CODEUNITS
from connectors.nav.schema import OBJECT_FIELDS as NAV_FIELDS
from connectors.nav.schema import PAGES as NAV_PAGES
from connectors.nav.schema import PAYMENT_STATUS_STATUSES, XSD_TYPES
from connectors.nav.schema import REQUIRED_ON_CREATE as NAV_REQUIRED
from connectors.quickbooks.schema import ENTITY_FIELDS, REQUIRED_ON_CREATE
from connectors.salesforce.schema import object_fields, open_suffixes, relationship_names
from mappings.schema import ObjectSchema


@cache
def schema_for(system: str, obj: str) -> ObjectSchema | None:
    """The schema of ``obj`` in ``system`` (``salesforce``, ``quickbooks``, ``nav``), or None if unknown."""
    if system == "salesforce":
        fields = object_fields(obj)
        if fields is None:
            return None
        names = frozenset(fields) | frozenset(relationship_names(fields))
        return ObjectSchema(system, obj, names, open_suffixes=open_suffixes(obj))
    if system == "quickbooks" and obj in ENTITY_FIELDS:
        required = frozenset(REQUIRED_ON_CREATE.get(obj, ()))
        return ObjectSchema(system, obj, frozenset(ENTITY_FIELDS[obj]), required=required)
    if system == "nav" and obj in NAV_FIELDS:
        kinds, enums = _nav_types(obj)
        required = frozenset(NAV_REQUIRED.get(obj, ()))
        return ObjectSchema(
            system, obj, frozenset(NAV_FIELDS[obj]), required=required, kinds=kinds, enums=enums
        )
    return None


def _nav_types(obj: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Scalar kinds and enumerations of a NAV page or codeunit, as its WSDL publishes them."""
    page = NAV_PAGES.get(obj)
    if page is not None:
        kinds = {name: kind for name, kind in page.fields.items() if kind in XSD_TYPES}
        enums = {name: page.enums[kind] for name, kind in page.fields.items() if kind in page.enums}
        return kinds, enums
    operation = next(iter(NAV_CODEUNITS.get(obj, {}).values()), None)
    if operation is None:
        return {}, {}
    kinds = {name: kind for name, kind in operation.parameters if kind in XSD_TYPES}
    enums = {"status": PAYMENT_STATUS_STATUSES} if obj == "PaymentStatus" else {}
    return kinds, enums
