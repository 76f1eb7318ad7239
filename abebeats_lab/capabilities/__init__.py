"""What each route accepts and costs: the route table, request checks and prices.

Capabilities are data, not code branches: the TOML files beside this package hold one
``[[route]]`` table per route (or per model family, with a ``*`` pattern), with its allowed
settings, defaults, limits, input maps and a price catalogue (prices with source and date).
`validate` checks a `VideoRequest` against them before anything is sent, so bad input never
costs money; `with_defaults` fills in what a request leaves ``None``; `price_of` answers one
setting's price, the user's own prices (``prices.toml``, ``prices=``, ``--price``) winning.

Callers use these names from here (``capabilities.validate(...)``); the code lives in
`table` (the records and their loading), `check` (validation and defaults) and `prices`
(user prices and the catalogue in words).
"""

from __future__ import annotations

from abebeats_lab.capabilities.check import nearest, validate, with_defaults
from abebeats_lab.capabilities.prices import (
    USER_PRICES_FILE,
    USER_SOURCE,
    catalogue_text,
    parse_price,
    price_of,
    price_overrides,
    priced,
    priced_routes,
    user_prices,
    user_prices_path,
)
from abebeats_lab.capabilities.table import (
    Capabilities,
    Price,
    PriceTier,
    Quote,
    all_routes,
    capabilities_for,
    concrete,
    model_of,
    models,
    routes_for_model,
)

__all__ = [
    "USER_PRICES_FILE",
    "USER_SOURCE",
    "Capabilities",
    "Price",
    "PriceTier",
    "Quote",
    "all_routes",
    "capabilities_for",
    "catalogue_text",
    "concrete",
    "model_of",
    "models",
    "nearest",
    "parse_price",
    "price_of",
    "price_overrides",
    "priced",
    "priced_routes",
    "routes_for_model",
    "user_prices",
    "user_prices_path",
    "validate",
    "with_defaults",
]
