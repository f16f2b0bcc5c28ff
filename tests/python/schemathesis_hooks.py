"""schemathesis's hooks for the API contract's test (test_openapi_contract.py).

A JSON body that is not UTF-8 never reaches the functions on the local stack: `cargo lambda
watch`, which stands for API Gateway here, answers such a request 500 itself (its body is
`https://httpstatuses.com/500`), before any function sees it. Such bodies are left out of the
run; the handlers' answer to any bytes, a JSON 400, is shown without the emulator by
tests/tests/properties.rs.
"""

import schemathesis


@schemathesis.hook
def filter_body(ctx, body) -> bool:
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
