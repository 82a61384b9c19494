"""Development tools for the local stack: never deployed (see .funcignore).

The local Functions host, the local ACS email endpoint, the sandbox payment gateway and
Azurite's launcher live here, apart from the product in `shared/` and `functions/`.
"""
