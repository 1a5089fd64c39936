"""What a spec is checked against on the vendor side: the fields of the object it reads or writes.

The mapping layer knows no vendor; the composition root hands it an :class:`ObjectSchema` per
``(system, object)`` built from each connector's own tables (Salesforce standard fields, QBO entity
fields, a WSDL's types). Without one, only the canonical side is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectSchema:
    system: str
    object: str
    fields: frozenset[str]
    required: frozenset[str] = frozenset()
    #: Field-name endings an instance may define itself (Salesforce ``__c``): not checked offline.
    open_suffixes: tuple[str, ...] = ()

    def knows(self, name: str) -> bool:
        return name in self.fields or any(name.endswith(suffix) for suffix in self.open_suffixes)


SchemaLookup = Callable[[str, str], ObjectSchema | None]
