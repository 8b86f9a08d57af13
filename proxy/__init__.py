"""sipguard: a SIP policy proxy for French call-centre trunks."""
