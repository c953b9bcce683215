"""schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

Three in four generated `POST /v1/payments` bodies become what a checkout sends for a card
payment to authorize now and capture later (a sandbox card that approves, in COP), keeping
the generated reference: so the stateful phase gets AUTHORIZED payments to follow
create -> get -> capture -> refund through. The others stay whatever the schema allows.
"""

import itertools

import hypothesis.strategies as st
import schemathesis

CREATE_PAYMENT = "POST /v1/payments"
# Generated references repeat; a number makes each card payment's its own, so it is taken
# (201) instead of refused as a reference the merchant already used (409).
_sequence = itertools.count()


def _card_to_capture_later(body):
    if not isinstance(body, dict):
        return body
    body = dict(body)
    reference = str(body.get("reference") or "order")[:100]
    body.update(
        reference=f"{reference}-{next(_sequence)}",
        amount="125000.00",
        currency="COP",
        provider="sandbox",
        capture="manual",
        payment_method={"type": "CARD", "token": "tok_sandbox_approved"},
    )
    return body


@schemathesis.hook
def before_generate_body(context, strategy):
    if context.operation is None or context.operation.label != CREATE_PAYMENT:
        return strategy
    card = strategy.map(_card_to_capture_later)
    return st.one_of(card, card, card, strategy)
