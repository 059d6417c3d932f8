"""A synthetic market that speaks the exchange's ticker format. Pure: no I/O, no wall clock.

The model, per product, on a one-second grid of event time (details and the figures the defaults
are calibrated on: ``docs/simulator.md``):

- a latent log-volatility: a slow and a fast mean-reverting (Ornstein-Uhlenbeck) component, rare
  regime jumps, and volatility bursts arriving as a self-exciting (Hawkes-like) process;
- each burst is announced by a *precursor* ramping up over the 20-60 s before its onset, which
  shows first in tick intensity, spread widening and order-book imbalance and only a little in
  returns: spikes are partly predictable beyond persistence;
- an order-flow signal (AR(1), pushed in a coming burst's direction) that tilts the best bid/ask
  quantities and the odds of the next moves, so imbalance predicts returns;
- ticks as a Cox process: Poisson counts per second whose intensity rises with volatility and
  precursors; a tick moves the mid only sometimes, by a Student-t amount (heavy tails);
- a spread of one price increment, or runs of wide spreads, more frequent and wider when volatile.

All randomness comes from ``numpy.random.Generator(PCG64(...))`` seeded from ``seed`` and the
product name, so the same seed and products give the same ticks, whatever else runs.
"""

from __future__ import annotations

import heapq
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

DEFAULT_START = 1767225600.0  # 2026-01-01T00:00:00Z
BLOCK_SECONDS = 300  # latent state is simulated this many seconds at a time
DAY_SECONDS = 86400
REGIME_SD = 0.5  # log-sd of a (product, day)'s volatility level: days differ about 2x, as real ones


@dataclass(frozen=True)
class ProductSpec:
    """Levels of one product. Volatilities and widths are in basis points of the mid price."""

    product_id: str
    price: float
    tick_rate: float  # ticks per second at the median latent volatility
    vol_bps: float  # scale of the 1-second log mid-price return volatility
    quantity_median: float  # median best bid/ask quantity
    volume_24h: float
    low_52w: str
    high_52w: str
    wide_spread_bps: float  # median width of a spread wider than one price increment
    price_decimals: int = 2
    max_ticks_per_s: int = 9  # the ticker channel never sent more per second in the recordings


DEFAULT_SPECS: dict[str, ProductSpec] = {
    "BTC-USD": ProductSpec(
        "BTC-USD",
        price=89500.0,
        tick_rate=2.5,
        vol_bps=0.18,
        quantity_median=0.022,
        volume_24h=8100.0,
        low_52w="74420.69",
        high_52w="126296",
        wide_spread_bps=0.15,
    ),
    "ETH-USD": ProductSpec(
        "ETH-USD",
        price=3050.0,
        tick_rate=2.8,
        vol_bps=0.27,
        quantity_median=0.5,
        volume_24h=160000.0,
        low_52w="1385.05",
        high_52w="4956.78",
        wide_spread_bps=0.3,
    ),
}


def spec_for(product_id: str) -> ProductSpec:
    """The calibrated spec of a known product, or a generic one at a price level of 50-200."""
    if product_id in DEFAULT_SPECS:
        return DEFAULT_SPECS[product_id]
    level = 50.0 + zlib.crc32(product_id.encode()) % 150
    return ProductSpec(
        product_id,
        price=level,
        tick_rate=2.0,
        vol_bps=0.8,
        quantity_median=20.0,
        volume_24h=1e6,
        low_52w=f"{level * 0.5:.2f}",
        high_52w=f"{level * 1.8:.2f}",
        wide_spread_bps=3.0,
    )


@dataclass(frozen=True)
class ModelParams:
    """Shape of the dynamics, shared by products (levels come from :class:`ProductSpec`).

    Log-volatility units: the latent state is added to log(sigma), so +0.7 doubles volatility.
    """

    slow_half_life_s: float = 3600.0  # slow component of the latent log-volatility
    slow_sd: float = 0.25
    fast_half_life_s: float = 120.0  # fast component
    fast_sd: float = 0.35
    regime_jump_per_s: float = 1 / 1800  # jumps of the slow component
    regime_jump_sd: float = 0.3
    burst_rate_per_s: float = 1 / 300  # baseline rate of burst arrivals
    burst_excitation: float = 1.0  # a burst's onset raises the arrival rate by this x amplitude
    burst_excitation_half_life_s: float = 180.0
    burst_amplitude: float = 0.6  # mean log-volatility lift of a burst (exponential)
    burst_half_life_s: tuple[float, float] = (20.0, 120.0)
    burst_ceiling: float = 1.6  # overlapping bursts saturate at this log-volatility lift
    precursor_lead_s: tuple[float, float] = (20.0, 60.0)
    precursor_vol_leak: float = 0.15  # share of the precursor that shows in returns before onset
    intensity_vol: float = 0.45  # d log(tick rate) / d log(volatility)
    intensity_precursor: float = 1.2  # d log(tick rate) / d precursor
    activity_half_life_s: float = 60.0  # tick-rate swings unrelated to volatility
    activity_sd: float = 0.15
    move_prob: float = 0.11  # chance a tick moves the efficient price, at median volatility
    move_prob_vol: float = 0.8  # d log(move chance) / d log(volatility)
    tail_dof: float = 5.0  # Student-t degrees of freedom of the price moves
    flow_ar: float = 0.95  # AR(1) coefficient per second of the order-flow signal
    flow_burst_push: float = 0.8  # how strongly a coming burst's direction shows in the flow
    flow_direction: float = 2.5  # logit of an up-move per unit of flow
    imbalance_flow: float = 2.5  # log(bid qty / ask qty) per unit of flow
    imbalance_noise: float = 1.0
    quantity_sd: float = 2.3  # log-sd of best bid/ask quantities
    spread_enter: float = 0.04  # chance per tick that a one-increment spread widens
    spread_enter_vol: float = 0.6  # d log(widening chance) / d log(volatility)
    spread_enter_precursor: float = 1.0
    spread_exit: float = 0.1  # chance per tick that a wide spread closes to one increment
    wide_spread_sd: float = 0.9  # log-sd of the width of wide spreads
    wide_spread_vol: float = 0.3  # d log(width) / d log(volatility)
    wide_spread_redraw: float = 0.2  # chance per tick that a wide spread changes width
    trade_prob: float = 0.26  # share of ticks that print a trade (move ``price``)
    trade_size_sd: float = 1.5  # log-sd of trade sizes


def _format_decimal(value: int, decimals: int) -> str:
    """An integer number of 10**-decimals units as the exchange prints it (no trailing zeros)."""
    if decimals == 0:
        return str(value)
    whole, frac = divmod(value, 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0")
    return text.rstrip(".")


_ts_cache: dict[int, str] = {}


def format_us(us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` from integer epoch microseconds, exactly."""
    secs, frac = divmod(us, 1_000_000)
    head = _ts_cache.get(secs)
    if head is None:
        if len(_ts_cache) > 4096:
            _ts_cache.clear()
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _ts_cache[secs] = head
    return f"{head}.{frac:06d}Z"


@dataclass
class _Burst:
    onset: int  # second (counted from the start) from which returns feel it
    lead: float  # length of its precursor, seconds
    amplitude: float
    half_life: float
    direction: float


@dataclass
class _ProductState:
    """Everything carried from one block of a product to the next."""

    spec: ProductSpec
    rng: np.random.Generator
    log_x: float  # log efficient price, in price increments
    last_price: int  # last trade, in price increments
    low_24h: int
    high_24h: int
    open_24h: float
    volume: float
    second: int = 0  # seconds simulated so far
    slow: float = 0.0
    fast: float = 0.0
    flow: float = 0.0
    activity: float = 0.0
    excitation: float = 0.0
    bursts: list[_Burst] = field(default_factory=list)
    wide: bool = False
    width_bps: float = 0.0
    offset: float = 0.5

    @classmethod
    def initial(cls, spec: ProductSpec, seed: int) -> _ProductState:
        rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(spec.product_id.encode())]))
        price = round(spec.price * 10**spec.price_decimals)
        return cls(
            spec=spec,
            rng=rng,
            log_x=math.log(price),
            last_price=price,
            low_24h=round(price * 0.985),
            high_24h=round(price * 1.03),
            open_24h=price * 1.01,
            volume=spec.volume_24h,
        )

    def snapshot(self) -> dict:
        """The ticker as it stands, for a subscription snapshot (uses no randomness)."""
        bid = math.floor(math.exp(self.log_x))
        q = round(self.spec.quantity_median * 1e8)
        return _ticker(
            self, self.last_price, self.volume, self.low_24h, self.high_24h, bid, bid + 1, q, q
        )


def _ticker(
    state: _ProductState,
    price: int,
    volume: float,
    low: int,
    high: int,
    bid: int,
    ask: int,
    bid_q: int,
    ask_q: int,
) -> dict:
    spec, d = state.spec, state.spec.price_decimals
    change = (price / state.open_24h - 1) * 100
    return {
        "type": "ticker",
        "product_id": spec.product_id,
        "price": _format_decimal(price, d),
        "volume_24_h": f"{volume:.8f}",
        "low_24_h": _format_decimal(low, d),
        "high_24_h": _format_decimal(high, d),
        "low_52_w": spec.low_52w,
        "high_52_w": spec.high_52w,
        "price_percent_chg_24_h": f"{change:.15g}",
        "best_bid": _format_decimal(bid, d),
        "best_ask": _format_decimal(ask, d),
        "best_bid_quantity": _format_decimal(bid_q, 8),
        "best_ask_quantity": _format_decimal(ask_q, 8),
    }


class MarketSimulator:
    """Endless, deterministic ticker stream for one or more products."""

    def __init__(
        self,
        products: Sequence[str] = ("BTC-USD", "ETH-USD"),
        seed: int = 0,
        start: float = DEFAULT_START,
        params: ModelParams | None = None,
    ) -> None:
        if not products:
            raise ValueError("at least one product")
        if len(set(products)) != len(products):
            raise ValueError(f"duplicate products in {list(products)}")
        self.products = tuple(products)
        self.seed = int(seed)
        self.start_us = round(start * 1_000_000)
        self.params = params or ModelParams()

    def ticks(self) -> Iterator[tuple[float, dict]]:
        """(event time in epoch seconds, ticker object) for all products, in time order, forever."""
        for us, ticker in self.ticks_us():
            yield us / 1_000_000, ticker

    def ticks_us(self) -> Iterator[tuple[int, dict]]:
        """As :meth:`ticks`, with exact integer epoch microseconds."""
        states = [_ProductState.initial(spec_for(p), self.seed) for p in self.products]
        while True:
            blocks = [_simulate_block(s, self.params, self.start_us) for s in states]
            yield from heapq.merge(*blocks, key=lambda item: item[0])

    def snapshot(self) -> list[dict]:
        """Every product's ticker at the start, as a subscription snapshot shows it."""
        return [_ProductState.initial(spec_for(p), self.seed).snapshot() for p in self.products]


def day_regimes(product_id: str, seed: int, days: int) -> np.ndarray:
    """Volatility multiplier of each day of a product (log-normal, median 1), seeded."""
    rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(product_id.encode()), 1]))
    return np.exp(rng.normal(0.0, REGIME_SD, days))


def regime_ticks(
    product_id: str,
    seed: int = 0,
    start: float = DEFAULT_START,
    days: int = 1,
    params: ModelParams | None = None,
) -> Iterator[tuple[int, dict]]:
    """One product's ticks over ``days`` whole days, each day in a regime of its own.

    The price path runs on across days; at midnight (counted from ``start``) the product's
    volatility level (:func:`day_regimes`) and with it its tick rate change, as the real market's
    do from one day to the next.
    """
    params = params or ModelParams()
    base = spec_for(product_id)
    state = _ProductState.initial(base, seed)
    start_us = round(start * 1_000_000)
    for level in day_regimes(product_id, seed, days):
        state.spec = replace(
            base,
            vol_bps=base.vol_bps * float(level),
            tick_rate=base.tick_rate * float(level) ** params.intensity_vol,
        )
        for _ in range(DAY_SECONDS // BLOCK_SECONDS):
            yield from _simulate_block(state, params, start_us)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _saturate(level: float, ceiling: float) -> float:
    """Smoothly cap a non-negative level: about ``level`` when small, never above ``ceiling``."""
    return ceiling * (1.0 - math.exp(-level / ceiling))


def _latent_block(state: _ProductState, p: ModelParams, n: int) -> dict[str, np.ndarray]:
    """Per-second latent paths for the next ``n`` seconds; advances the state.

    ``vol`` is the latent log-volatility (slow + fast + bursts), ``pre`` the precursor of coming
    bursts (zero once they have started), ``flow`` the order-flow signal, ``activity`` swings of
    the tick rate unrelated to volatility.
    """
    rng = state.rng
    k_slow = math.log(2) / p.slow_half_life_s
    k_fast = math.log(2) / p.fast_half_life_s
    slow_noise = rng.standard_normal(n) * p.slow_sd * math.sqrt(2 * k_slow)
    fast_noise = rng.standard_normal(n) * p.fast_sd * math.sqrt(2 * k_fast)
    jumps = (rng.random(n) < p.regime_jump_per_s) * rng.normal(0.0, p.regime_jump_sd, n)
    arrivals = rng.random(n)
    flow_noise = rng.standard_normal(n) * math.sqrt(1 - p.flow_ar**2)
    k_act = math.log(2) / p.activity_half_life_s
    act_noise = rng.standard_normal(n) * p.activity_sd * math.sqrt(2 * k_act)
    exc_decay = 0.5 ** (1 / p.burst_excitation_half_life_s)

    vol = np.empty(n)
    pre = np.zeros(n)
    flow = np.empty(n)
    activity = np.empty(n)
    for i in range(n):
        t = state.second + i
        state.slow += -k_slow * state.slow + slow_noise[i] + jumps[i]
        state.fast += -k_fast * state.fast + fast_noise[i]
        if arrivals[i] < p.burst_rate_per_s * (1.0 + state.excitation):
            lead = rng.uniform(*p.precursor_lead_s)
            state.bursts.append(
                _Burst(
                    onset=t + math.ceil(lead),
                    lead=lead,
                    amplitude=rng.exponential(p.burst_amplitude),
                    half_life=rng.uniform(*p.burst_half_life_s),
                    direction=1.0 if rng.random() < 0.5 else -1.0,
                )
            )
        state.excitation *= exc_decay
        burst = 0.0
        push = 0.0
        alive = []
        for b in state.bursts:
            if t < b.onset:
                ramp = b.amplitude * (1.0 - (b.onset - t) / b.lead)
                pre[i] += ramp
                push += b.direction * ramp
                alive.append(b)
                continue
            if t == b.onset:
                state.excitation += p.burst_excitation * b.amplitude
            level = b.amplitude * 0.5 ** ((t - b.onset) / b.half_life)
            burst += level
            push += b.direction * level
            if level > 0.01:
                alive.append(b)
        state.bursts = alive
        vol[i] = state.slow + state.fast + _saturate(burst, p.burst_ceiling)
        pre[i] = _saturate(pre[i], p.burst_ceiling)
        state.flow = p.flow_ar * state.flow + flow_noise[i]
        state.activity += -k_act * state.activity + act_noise[i]
        activity[i] = state.activity
        flow[i] = state.flow + p.flow_burst_push * math.tanh(push)
    state.second += n
    return {"vol": vol, "pre": pre, "flow": flow, "activity": activity}


def _spread_chain(
    state: _ProductState, p: ModelParams, enter: np.ndarray, vol: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tick: whether the spread is wide, its width (bps) and where the efficient price sits
    inside it (0 = at the bid). A two-state Markov chain, so wide spreads come in runs."""
    rng = state.rng
    total = len(enter)
    u = rng.random(total)
    redraw = rng.random(total) < p.wide_spread_redraw
    log_widths = p.wide_spread_vol * vol + p.wide_spread_sd * rng.standard_normal(total)
    widths = state.spec.wide_spread_bps * np.exp(log_widths)
    offsets = rng.random(total)
    wide = np.empty(total, dtype=bool)
    width = np.empty(total)
    offset = np.empty(total)
    w, wb, off = state.wide, state.width_bps, state.offset
    for i in range(total):
        if w:
            if u[i] < p.spread_exit:
                w, off = False, 0.5
            elif redraw[i]:
                wb = widths[i]
        elif u[i] < enter[i]:
            w, wb, off = True, widths[i], offsets[i]
        wide[i], width[i], offset[i] = w, wb, off
    state.wide, state.width_bps, state.offset = w, wb, off
    return wide, width, offset


def _simulate_block(state: _ProductState, p: ModelParams, start_us: int) -> list[tuple[int, dict]]:
    """The next block of ticks of one product as (epoch microseconds, ticker) in time order."""
    n = BLOCK_SECONDS
    first_second = state.second
    lat = _latent_block(state, p, n)
    rng = state.rng
    spec = state.spec

    vol, pre, flow = lat["vol"], lat["pre"], lat["flow"]
    rate = spec.tick_rate * np.exp(
        p.intensity_vol * vol + p.intensity_precursor * pre + lat["activity"]
    )
    counts = np.minimum(rng.poisson(rate), spec.max_ticks_per_s)
    total = int(counts.sum())
    if total == 0:
        return []
    sec = np.repeat(np.arange(n), counts)
    offsets_us = rng.integers(0, 1_000_000, total)
    offsets_us = offsets_us[np.lexsort((offsets_us, sec))]
    times_us = start_us + (first_second + sec).astype(np.int64) * 1_000_000 + offsets_us

    # efficient price: a tick moves it with a chance rising with volatility, by a Student-t
    # amount scaled so that one second's variance is sigma^2; up-moves are likelier with flow
    sigma = spec.vol_bps * 1e-4 * np.exp(vol + p.precursor_vol_leak * pre)
    move_prob = np.minimum(p.move_prob * np.exp(p.move_prob_vol * vol), 0.9)
    move_sd = sigma / np.sqrt(rate * move_prob)
    t_scale = math.sqrt((p.tail_dof - 2) / p.tail_dof)
    size = np.abs(rng.standard_t(p.tail_dof, total)) * t_scale * move_sd[sec]
    up_prob = _sigmoid(p.flow_direction * flow)[sec]
    up = rng.random(total) < up_prob
    moves = rng.random(total) < move_prob[sec]
    log_x = state.log_x + np.cumsum(np.where(moves, np.where(up, size, -size), 0.0))
    state.log_x = float(log_x[-1])
    x = np.exp(log_x)  # in price increments

    # spread: one increment, or a run of wide spreads, entered more often when volatile
    enter = np.minimum(
        p.spread_enter * np.exp(p.spread_enter_vol * vol + p.spread_enter_precursor * pre), 0.9
    )[sec]
    wide, width_bps, offset = _spread_chain(state, p, enter, vol[sec])
    spread = np.where(wide, np.maximum(np.round(x * width_bps * 1e-4), 2), 1).astype(np.int64)
    bid = np.maximum(np.floor(x - offset * spread + 0.5).astype(np.int64), 1)
    ask = bid + spread

    # best quantities: log-normal, tilted towards the bid when flow is positive
    tilt = p.imbalance_flow * flow[sec] + rng.normal(0.0, p.imbalance_noise, total)
    log_q = math.log(spec.quantity_median)
    bid_q = np.exp(log_q + tilt / 2 + rng.normal(0.0, p.quantity_sd, total))
    ask_q = np.exp(log_q - tilt / 2 + rng.normal(0.0, p.quantity_sd, total))
    bid_q = np.maximum(np.round(bid_q * 1e8), 1).astype(np.int64)
    ask_q = np.maximum(np.round(ask_q * 1e8), 1).astype(np.int64)

    # last trade: buys at the ask, sells at the bid, the price held between trades
    trade = rng.random(total) < p.trade_prob
    buy = np.where(moves, up, rng.random(total) < up_prob)
    trade_px = np.where(buy, ask, bid)
    last_idx = np.maximum.accumulate(np.where(trade, np.arange(total), -1))
    price = np.where(last_idx >= 0, trade_px[np.maximum(last_idx, 0)], state.last_price)
    state.last_price = int(price[-1])
    mean_size = spec.volume_24h / 86400 / (spec.tick_rate * p.trade_prob)
    sizes = rng.lognormal(math.log(mean_size) - p.trade_size_sd**2 / 2, p.trade_size_sd, total)
    elapsed = sec + offsets_us / 1e6
    volume = (
        state.volume + np.cumsum(np.where(trade, sizes, 0.0)) - elapsed * spec.volume_24h / 86400
    )
    volume = np.maximum(volume, 0.0)
    state.volume = float(volume[-1]) - (n - elapsed[-1]) * spec.volume_24h / 86400
    high = np.maximum.accumulate(np.maximum(price, state.high_24h))
    low = np.minimum.accumulate(np.minimum(price, state.low_24h))
    state.high_24h, state.low_24h = int(high[-1]), int(low[-1])

    return [
        (
            int(times_us[i]),
            _ticker(
                state,
                int(price[i]),
                float(volume[i]),
                int(low[i]),
                int(high[i]),
                int(bid[i]),
                int(ask[i]),
                int(bid_q[i]),
                int(ask_q[i]),
            ),
        )
        for i in range(total)
    ]


def simulate_envelopes(
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
    seed: int = 0,
    start: float = DEFAULT_START,
    minutes: float = 60.0,
    params: ModelParams | None = None,
) -> Iterator[dict]:
    """Complete Advanced Trade envelopes as a recording holds them, ``minutes`` of event time.

    First one ``snapshot`` per product, then one ``update`` envelope per ticker, with a
    ``heartbeats`` envelope every second; ``sequence_num`` counts all of them, as on one connection.
    """
    for _, envelope in timed_envelopes(products, seed, start, minutes, params):
        yield envelope


def timed_envelopes(
    products: Sequence[str] = ("BTC-USD", "ETH-USD"),
    seed: int = 0,
    start: float = DEFAULT_START,
    minutes: float = 60.0,
    params: ModelParams | None = None,
) -> Iterator[tuple[int, dict]]:
    """As :func:`simulate_envelopes`, each envelope with its time in integer epoch microseconds."""
    sim = MarketSimulator(products, seed=seed, start=start, params=params)
    start_us = sim.start_us
    end_us = start_us + round(minutes * 60 * 1_000_000)
    seq = 0
    for ticker in sim.snapshot():
        yield start_us, ticker_envelope(start_us, seq, "snapshot", ticker)
        seq += 1
    beat = 1
    next_beat_us = start_us + 1_000_000
    for us, ticker in sim.ticks_us():
        while next_beat_us <= us and next_beat_us < end_us:
            yield next_beat_us, _heartbeat_envelope(next_beat_us, seq, beat, start_us)
            seq += 1
            beat += 1
            next_beat_us += 1_000_000
        if us >= end_us:
            return
        yield us, ticker_envelope(us, seq, "update", ticker)
        seq += 1


def ticker_envelope(us: int, seq: int, kind: str, ticker: dict) -> dict:
    return {
        "channel": "ticker",
        "client_id": "",
        "timestamp": format_us(us),
        "sequence_num": seq,
        "events": [{"type": kind, "tickers": [ticker]}],
    }


def _heartbeat_envelope(us: int, seq: int, counter: int, start_us: int) -> dict:
    stamp = format_us(us)
    uptime = (us - start_us) / 1_000_000
    current = f"{stamp[:10]} {stamp[11:26]}000 +0000 UTC m=+{uptime:.9f}"
    return {
        "channel": "heartbeats",
        "client_id": "",
        "timestamp": stamp,
        "sequence_num": seq,
        "events": [{"current_time": current, "heartbeat_counter": counter}],
    }
