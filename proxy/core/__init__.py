"""Sans-IO RFC 3261 §16 transaction-stateful proxy: events in, actions out.

`ProxyCore` (proxy.py) ties the transaction layer, routing and the decision steps
(decision.py) together; `events` and `actions` are its whole interface with the shell.
"""
