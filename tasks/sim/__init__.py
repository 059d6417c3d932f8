"""The market simulator: a calibrated synthetic market, its statistics, and the local exchange.

``simulator`` and ``market_stats`` are pure; ``writer`` (recordings on disk) and ``exchange`` (a
local Advanced Trade WebSocket) are its two edges to the outside world (:data:`IO_MODULES`).
"""

IO_MODULES = ("writer", "exchange")
