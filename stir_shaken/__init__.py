"""MAN (French STIR/SHAKEN) PASSporT signing and verification, usable without the proxy."""
