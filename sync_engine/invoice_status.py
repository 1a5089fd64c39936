"""The canonical ``invoice_status`` document: where an invoice stands, as the ERP and the CRM see it.

Queued in the outbox when an invoice is finalised and whenever its payment state changes, and
mapped by the ``*/invoice_status.out`` / ``nav/payment_status.out`` specs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sync_engine.store.models import Invoice

STATUS_ENTITY = "invoice_status"


def invoice_status_document(invoice: Invoice) -> dict[str, Any]:
    paid = invoice.amount_paid or Decimal(0)
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "currency": invoice.currency,
        "total": invoice.total,
        "amount_paid": paid,
        "amount_due": Decimal(0) if invoice.status == "void" else invoice.total - paid,  # owed no more
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "paid_on": invoice.paid_on.isoformat() if invoice.paid_on else None,
        "customer_id": invoice.customer_id,
    }
