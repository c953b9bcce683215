"""schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

Three in four generated `POST /v1/payments` bodies become what a checkout sends for a card
payment to authorize now and capture later (a sandbox card that approves, in COP), keeping
the generated reference: so the stateful phase gets AUTHORIZED payments to follow
create -> get -> capture -> refund through. The others stay whatever the schema allows.
"""

import hypothesis.strategies as st
import schemathesis

CREATE_PAYMENT = "POST /v1/payments"


def _card_to_capture_later(body):
    if not isinstance(body, dict):
        return body
    body = dict(body)
    body.update(
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
    return st.one_of(strategy, card, card, card)
