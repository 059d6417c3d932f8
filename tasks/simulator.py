"""A synthetic market that speaks the exchange's ticker format. Pure: no I/O, no wall clock.

The model, per product, on a one-second grid of event time:

- a latent log-volatility ``h``: mean-reverting (Ornstein-Uhlenbeck) with rare regime jumps;
- volatility bursts arriving as a self-exciting (Hawkes-like) process. Each burst is announced by a
  *precursor* that ramps up over 15-60 s before its onset and shows first in tick intensity, spread
  widening and order-book imbalance, and only a little in returns; after the onset the burst lifts
  return volatility and decays. This makes spikes partly predictable beyond persistence;
- an order-flow signal ``z`` (AR(1), pushed in the burst's direction) that sets both the
  bid/ask quantity imbalance and a small drift of the next moves, so imbalance predicts returns;
- ticks as a Cox process: Poisson counts per second whose intensity rises with volatility and the
  precursor; per-tick log-mid increments with Student-t innovations (heavy tails);
- a spread of one price increment most of the time, widening more often when volatility is high.

All randomness comes from ``numpy.random.Generator(PCG64(...))`` seeded from ``seed`` and the
product name, so the same seed and products give the same ticks, whatever else runs. The figures
the defaults are calibrated on are in ``docs/simulator.md``.
"""

from __future__ import annotations

import heapq
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_START = 1767225600.0  # 2026-01-01T00:00:00Z
BLOCK_SECONDS = 300  # latent state is simulated this many seconds at a time


@dataclass(frozen=True)
class ProductSpec:
    """Level and scale of one product. Volatility is per second of log mid-price, in bps."""

    product_id: str
    price: float
    tick_rate: float  # median ticks per second in calm markets
    vol_bps: float  # median 1-second return volatility
    price_decimals: int = 2
    quantity_scale: float = 0.05  # median best bid/ask quantity
    volume_24h: float = 8000.0
    low_52w: str = "0"
    high_52w: str = "0"


DEFAULT_SPECS: dict[str, ProductSpec] = {
    "BTC-USD": ProductSpec(
        "BTC-USD",
        price=89500.0,
        tick_rate=3.0,
        vol_bps=0.8,
        quantity_scale=0.05,
        volume_24h=8100.0,
        low_52w="74420.69",
        high_52w="126296",
    ),
    "ETH-USD": ProductSpec(
        "ETH-USD",
        price=3050.0,
        tick_rate=3.5,
        vol_bps=1.1,
        quantity_scale=1.5,
        volume_24h=150000.0,
        low_52w="1385.05",
        high_52w="4956.78",
    ),
}


def spec_for(product_id: str) -> ProductSpec:
    """The calibrated spec of a known product, or a generic one at a price level of ~100."""
    if product_id in DEFAULT_SPECS:
        return DEFAULT_SPECS[product_id]
    level = 50.0 + zlib.crc32(product_id.encode()) % 150
    return ProductSpec(
        product_id,
        price=level,
        tick_rate=2.0,
        vol_bps=1.5,
        quantity_scale=20.0,
        volume_24h=1e6,
        low_52w=f"{level * 0.5:.2f}",
        high_52w=f"{level * 1.8:.2f}",
    )


@dataclass(frozen=True)
class ModelParams:
    """Shape of the dynamics, shared by products (levels come from :class:`ProductSpec`)."""

    h_half_life_s: float = 240.0  # mean reversion of the latent log-vol
    h_sd: float = 0.45  # its stationary standard deviation
    regime_jump_per_s: float = 1 / 1800  # rate of jumps of the latent log-vol
    regime_jump_sd: float = 0.5
    burst_rate_per_s: float = 1 / 420  # baseline rate of burst arrivals
    burst_excitation: float = 1.5  # each burst multiplies the arrival rate for a while
    burst_excitation_half_life_s: float = 120.0
    burst_amplitude: float = 0.9  # mean log-vol lift of a burst (exponential)
    burst_half_life_s: tuple[float, float] = (20.0, 90.0)
    precursor_lead_s: tuple[float, float] = (15.0, 60.0)
    precursor_vol_leak: float = 0.2  # share of the precursor that shows in returns before onset
    intensity_vol_beta: float = 0.7  # d log(tick rate) / d log(vol)
    intensity_precursor: float = 0.8
    tail_dof: float = 3.5  # Student-t degrees of freedom of per-tick innovations
    flow_ar: float = 0.9  # AR(1) of the order-flow signal per second
    flow_drift: float = 0.15  # drift per second, in units of sigma, per unit of flow
    flow_burst_push: float = 0.8  # how strongly a burst's direction shows in the flow
    imbalance_flow: float = 0.8  # log(bid qty / ask qty) per unit of flow
    imbalance_noise: float = 1.0
    quantity_sd: float = 1.2  # log-sd of best bid/ask quantities
    spread_wide_base: float = -3.0  # logit of the probability of a spread wider than one increment
    spread_wide_vol: float = 1.5
    spread_wide_precursor: float = 1.0
    spread_wide_mean_ticks: float = 8.0  # mean extra increments when wide
    trade_prob: float = 0.5  # share of ticks that print a trade (move ``price``)


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
    onset: int  # second index (absolute, from the start) where returns feel it
    lead: float
    amplitude: float
    half_life: float
    direction: float


@dataclass
class _ProductState:
    spec: ProductSpec
    rng: np.random.Generator
    second: int = 0  # seconds simulated so far
    h: float = 0.0
    flow: float = 0.0
    excitation: float = 0.0
    log_mid: float = 0.0
    last_price: int = 0
    volume: float = 0.0
    open_24h: float = 0.0
    low_24h: int = 0
    high_24h: int = 0
    bursts: list[_Burst] = field(default_factory=list)


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
        self.products = tuple(products)
        self.seed = int(seed)
        self.start_us = round(start * 1_000_000)
        self.params = params or ModelParams()

    def _new_state(self, product_id: str) -> _ProductState:
        spec = spec_for(product_id)
        rng = np.random.Generator(np.random.PCG64([self.seed, zlib.crc32(product_id.encode())]))
        scale = 10**spec.price_decimals
        price = round(spec.price * scale)
        return _ProductState(
            spec=spec,
            rng=rng,
            log_mid=math.log(spec.price * scale),
            last_price=price,
            volume=spec.volume_24h,
            open_24h=spec.price * 1.01,
            low_24h=round(price * 0.985),
            high_24h=round(price * 1.03),
        )

    def ticks(self) -> Iterator[tuple[float, dict]]:
        """(event time in epoch seconds, ticker object) for all products, in time order, forever."""
        for us, ticker in self.ticks_us():
            yield us / 1_000_000, ticker

    def ticks_us(self) -> Iterator[tuple[int, dict]]:
        """As :meth:`ticks`, with exact integer epoch microseconds."""
        states = [self._new_state(p) for p in self.products]
        while True:
            blocks = [_simulate_block(s, self.params, self.start_us) for s in states]
            yield from heapq.merge(*blocks, key=lambda item: item[0])

    def initial_tickers(self) -> list[dict]:
        """The first ticker of every product, as a subscription snapshot would show it."""
        first: dict[str, dict] = {}
        for _, ticker in self.ticks_us():
            first.setdefault(ticker["product_id"], ticker)
            if len(first) == len(self.products):
                return [first[p] for p in self.products]
        raise AssertionError("unreachable")


def _latent_block(state: _ProductState, p: ModelParams, n: int) -> dict[str, np.ndarray]:
    """Per-second latent paths for the next ``n`` seconds; advances the state."""
    rng = state.rng
    k = math.log(2) / p.h_half_life_s
    h_noise = rng.standard_normal(n) * p.h_sd * math.sqrt(2 * k)
    jumps = (rng.random(n) < p.regime_jump_per_s) * rng.normal(0.0, p.regime_jump_sd, n)
    arrivals = rng.random(n)
    flow_noise = rng.standard_normal(n) * math.sqrt(1 - p.flow_ar**2)
    exc_decay = 0.5 ** (1 / p.burst_excitation_half_life_s)

    h = np.empty(n)
    burst = np.zeros(n)
    pre = np.zeros(n)
    direction = np.zeros(n)
    flow = np.empty(n)
    for i in range(n):
        t = state.second + i
        state.h += -k * state.h + h_noise[i] + jumps[i]
        h[i] = state.h
        rate = p.burst_rate_per_s * (1.0 + state.excitation)
        if arrivals[i] < rate:
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
        alive = []
        for b in state.bursts:
            if t < b.onset:
                ramp = 1.0 - (b.onset - t) / b.lead
                pre[i] += b.amplitude * ramp
                direction[i] += b.direction * b.amplitude * ramp
                alive.append(b)
            else:
                if t == b.onset:
                    state.excitation += p.burst_excitation * b.amplitude
                decay = 0.5 ** ((t - b.onset) / b.half_life)
                burst[i] += b.amplitude * decay
                pre[i] += b.amplitude * decay
                direction[i] += b.direction * b.amplitude * decay
                if decay > 0.01:
                    alive.append(b)
        state.bursts = alive
        state.flow = p.flow_ar * state.flow + flow_noise[i]
        flow[i] = state.flow + p.flow_burst_push * direction[i]
    state.second += n
    return {"h": h, "burst": burst, "pre": pre, "flow": flow}


def _simulate_block(state: _ProductState, p: ModelParams, start_us: int) -> list[tuple[int, dict]]:
    """The next block of ticks of one product as (epoch microseconds, ticker) in time order."""
    n = BLOCK_SECONDS
    first_second = state.second
    lat = _latent_block(state, p, n)
    rng = state.rng
    spec = state.spec
    scale = 10**spec.price_decimals

    precursor_only = np.maximum(lat["pre"] - lat["burst"], 0.0)
    vol_state = lat["h"] + lat["burst"]
    sigma = spec.vol_bps * 1e-4 * np.exp(vol_state + p.precursor_vol_leak * precursor_only)
    rate = spec.tick_rate * np.exp(
        p.intensity_vol_beta * vol_state + p.intensity_precursor * precursor_only
    )
    counts = rng.poisson(rate)
    total = int(counts.sum())
    if total == 0:
        return []
    sec = np.repeat(np.arange(n), counts)
    offsets_us = rng.integers(0, 1_000_000, total)
    # sort within each second: seconds are already ordered, so order by (sec, offset)
    order = np.lexsort((offsets_us, sec))
    offsets_us = offsets_us[order]
    times_us = start_us + (first_second + sec).astype(np.int64) * 1_000_000 + offsets_us

    # log-mid path: drift from the order flow plus Student-t shocks, variance sigma^2 per second
    t_scale = math.sqrt((p.tail_dof - 2) / p.tail_dof)
    shocks = rng.standard_t(p.tail_dof, total) * t_scale
    per_tick_sd = sigma[sec] / np.sqrt(rate[sec])
    drift = p.flow_drift * lat["flow"][sec] * sigma[sec] / rate[sec]
    log_mid = state.log_mid + np.cumsum(drift + per_tick_sd * shocks)
    state.log_mid = float(log_mid[-1])
    mid = np.exp(log_mid)  # in price increments

    # spread, in price increments: one, or wider with a probability rising with volatility
    logit = (
        p.spread_wide_base
        + p.spread_wide_vol * vol_state[sec]
        + p.spread_wide_precursor * precursor_only[sec]
    )
    wide = rng.random(total) < 1 / (1 + np.exp(-logit))
    extra = rng.geometric(1 / p.spread_wide_mean_ticks, total)
    spread = 1 + wide * extra
    bid = np.maximum(np.floor(mid - spread / 2 + 0.5).astype(np.int64), 1)
    ask = bid + spread

    # best quantities: log-normal, tilted by the order flow (imbalance)
    tilt = p.imbalance_flow * lat["flow"][sec] + rng.normal(0, p.imbalance_noise, total)
    base_q = math.log(spec.quantity_scale) + rng.normal(0, p.quantity_sd, total)
    bid_q = np.maximum(np.round(np.exp(base_q + tilt / 2) * 1e8).astype(np.int64), 1)
    ask_q = np.maximum(np.round(np.exp(base_q - tilt / 2) * 1e8).astype(np.int64), 1)

    # last trade: at the ask when the mid went up, at the bid otherwise; held between trades
    trade = rng.random(total) < p.trade_prob
    up = np.diff(log_mid, prepend=log_mid[0] - drift[0]) >= 0
    trade_px = np.where(up, ask, bid)
    last_idx = np.maximum.accumulate(np.where(trade, np.arange(total), -1))
    price = np.where(last_idx >= 0, trade_px[np.maximum(last_idx, 0)], state.last_price)
    state.last_price = int(price[-1])
    sizes = np.where(trade, rng.lognormal(math.log(spec.quantity_scale / 5), 1.0, total), 0.0)
    volume = state.volume + np.cumsum(sizes)
    state.volume = float(volume[-1])
    high = np.maximum.accumulate(np.maximum(price, state.high_24h))
    low = np.minimum.accumulate(np.minimum(price, state.low_24h))
    state.high_24h, state.low_24h = int(high[-1]), int(low[-1])
    change = (price / scale / state.open_24h - 1) * 100

    d = spec.price_decimals
    out: list[tuple[int, dict]] = []
    for i in range(total):
        out.append(
            (
                int(times_us[i]),
                {
                    "type": "ticker",
                    "product_id": spec.product_id,
                    "price": _format_decimal(int(price[i]), d),
                    "volume_24_h": f"{volume[i]:.8f}",
                    "low_24_h": _format_decimal(int(low[i]), d),
                    "high_24_h": _format_decimal(int(high[i]), d),
                    "low_52_w": spec.low_52w,
                    "high_52_w": spec.high_52w,
                    "price_percent_chg_24_h": f"{change[i]:.15g}",
                    "best_bid": _format_decimal(int(bid[i]), d),
                    "best_ask": _format_decimal(int(ask[i]), d),
                    "best_bid_quantity": _format_decimal(int(bid_q[i]), 8),
                    "best_ask_quantity": _format_decimal(int(ask_q[i]), 8),
                },
            )
        )
    return out


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
    sim = MarketSimulator(products, seed=seed, start=start, params=params)
    start_us = sim.start_us
    end_us = start_us + round(minutes * 60 * 1_000_000)
    seq = 0
    for ticker in sim.initial_tickers():
        yield _ticker_envelope(start_us, seq, "snapshot", ticker)
        seq += 1
    beat = 1
    next_beat_us = start_us + 1_000_000
    for us, ticker in sim.ticks_us():
        while next_beat_us <= us and next_beat_us < end_us:
            yield _heartbeat_envelope(next_beat_us, seq, beat, start_us)
            seq += 1
            beat += 1
            next_beat_us += 1_000_000
        if us >= end_us:
            return
        yield _ticker_envelope(us, seq, "update", ticker)
        seq += 1


def _ticker_envelope(us: int, seq: int, kind: str, ticker: dict) -> dict:
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
