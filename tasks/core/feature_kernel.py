"""The feature engine's per-tick work, compiled (numba). Pure; :mod:`tasks.core.features` drives it.

One call runs one product's ticks, in arrival order, through that product's state: the rules are
those of :mod:`tasks.core.features` (its docstring), step for step and operation for operation,
so the rows are bit-identical to the pure Python engine this replaced.

State is plain numpy arrays, so the compiled code is cached on disk (``cache=True``) and a new
process loads it instead of compiling:

- every window of a product holds a suffix of the same tick history, so one ring buffer of ticks
  (``ticks``, rows addressed by an ever-growing tick number masked by the capacity) serves all
  four; a window is its first tick number (``START``) and where its current epoch began
  (``FRONT_END``: the ticks before it carry suffix sums, the later ones a running sum);
- the monotonic deques of highs and lows are rings of tick numbers (``deques``);
- the 1-second returns are a second ring (``seconds``) shared the same way by both 1-s windows;
- scalars sit in ``fs`` (floats) and ``ints`` at the offsets named below.

A call stops before a tick when a ring may be full and returns how many ticks it ran; the
caller grows the rings (:func:`grow`) and calls again from there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tasks.core.messages import MAX_PRICE, MIN_PRICE

NAN = math.nan
BPS = 1e4
MAX_SPREAD_BPS = 2 * BPS  # (ask - bid) / mid with 0 < bid <= ask stays below 2
# the output columns follow features.FEATURE_NAMES: three windows, the regime window, two 1-s ones
N_FEATURES = 7 * 3 + 5 + 2 + 2 + 4
N_WINDOWS = 4  # the three feature windows, then the regime window
SCALE_30_300 = math.sqrt(300 / 30)
SCALE_60_300 = math.sqrt(300 / 60)
# the engine's configuration (``config``): its rules, then the windows' widths in seconds (the
# features module's, passed in so that the cached code never holds a stale copy)
K_LATE_TOLERANCE, K_MAX_GAP, K_MAX_SOURCES, K_MAX_RATE = range(4)
K_WIDTH = 4  # the three windows', then the regime window's
K_SECOND_WIDTH = K_WIDTH + N_WINDOWS  # the two 1-s windows'
N_CONFIG = K_SECOND_WIDTH + 2

# what became of a tick
TAKEN = 0
TAKEN_LATE = 1  # taken at the product's latest time
TAKEN_AFTER_GAP = 2  # taken, windows restarted before it
DUPLICATE = 3
LATE_DROPPED = 4
SEQUENCE_JUMP = 5
OUT_OF_BOUNDS_MID = 6  # mid or time out of bounds: values[0] holds the mid
OUT_OF_BOUNDS_TERMS = 7  # spread or imbalance out of bounds: values[0:2] hold them

# columns of the tick ring
C_TS, C_MID, C_R2, C_SPREAD, C_IMB, C_HAS_R, C_HAS_SPREAD, C_HAS_IMB = range(8)
C_SUFFIX = 8  # suffix sums (r2, spread, imbalance) of window w at C_SUFFIX + 3 * w
N_TICK_COLUMNS = C_SUFFIX + 3 * N_WINDOWS
# columns of the seconds ring
S_SECOND, S_R2, S_SUFFIX = 0, 1, 2  # suffix sum of 1-s window s at S_SUFFIX + s
N_SECOND_COLUMNS = S_SUFFIX + 2

# float scalars
F_LAST_TS, F_LAST_MID, F_GRID_MID, F_VOL_60, F_VOL_300 = range(5)
F_NEXT_SECOND, F_FIRST_SECOND, F_VOLS_FLOOR = 5, 6, 7  # whole seconds, as floats
F_BACK = 8  # per window w: back sums r2, spread, imbalance at F_BACK + 3 * w
F_BOUNDARY = F_BACK + 3 * N_WINDOWS  # per window: where its next epoch starts
F_BASE_TS = F_BOUNDARY + N_WINDOWS  # per window: the last tick evicted in this segment
F_BASE_MID = F_BASE_TS + N_WINDOWS
F_SECOND_BACK = F_BASE_MID + N_WINDOWS  # per 1-s window
F_SECOND_BOUNDARY = F_SECOND_BACK + 2
N_FLOATS = F_SECOND_BOUNDARY + 2
# integer scalars
I_SEGMENT, I_TAIL, I_SECOND_TAIL, I_SOURCES, I_CLOCK, I_NEEDS = range(6)
I_WORK = 6  # ring entries visited (evicted, summed, popped): the work, counted for the tests
I_START = 7  # per window
I_FRONT_END = I_START + N_WINDOWS
I_N_RET = I_FRONT_END + N_WINDOWS
I_N_SPREAD = I_N_RET + N_WINDOWS
I_N_IMB = I_N_SPREAD + N_WINDOWS
I_HEAD = I_N_IMB + N_WINDOWS  # per deque d: highs of window k at 2k, lows at 2k + 1
I_DEQUE_TAIL = I_HEAD + 6
I_SECOND_START = I_DEQUE_TAIL + 6  # per 1-s window
I_SECOND_FRONT_END = I_SECOND_START + 2
N_INTS = I_SECOND_FRONT_END + 2
# columns of the sources table: code, last sequence number, its index, when it was added
R_CODE, R_SEQ, R_INDEX, R_ADDED = range(4)
# what a call ran out of (ints[I_NEEDS])
NEEDS_TICK_ROOM, NEEDS_SECOND_ROOM = 1, 2


@njit(cache=True)
def restart(fs, ints):
    """Every window empty again: a new segment (``_ProductState.restart`` before)."""
    ints[I_SEGMENT] += 1
    fs[F_LAST_MID] = NAN
    tail = ints[I_TAIL]
    for w in range(N_WINDOWS):
        ints[I_START + w] = tail
        ints[I_FRONT_END + w] = tail
        ints[I_N_RET + w] = 0
        ints[I_N_SPREAD + w] = 0
        ints[I_N_IMB + w] = 0
        for c in range(3):
            fs[F_BACK + 3 * w + c] = 0.0
        fs[F_BOUNDARY + w] = -math.inf
        fs[F_BASE_TS + w] = NAN
        fs[F_BASE_MID + w] = NAN
    for d in range(6):
        ints[I_HEAD + d] = ints[I_DEQUE_TAIL + d]
    for s in range(2):
        ints[I_SECOND_START + s] = ints[I_SECOND_TAIL]
        ints[I_SECOND_FRONT_END + s] = ints[I_SECOND_TAIL]
        fs[F_SECOND_BACK + s] = 0.0
        fs[F_SECOND_BOUNDARY + s] = -math.inf
    fs[F_NEXT_SECOND] = 0.0
    fs[F_FIRST_SECOND] = -1.0
    fs[F_GRID_MID] = NAN
    fs[F_VOL_60] = NAN
    fs[F_VOL_300] = NAN
    fs[F_VOLS_FLOOR] = -1.0


@njit(cache=True)
def _new_epoch(fs, ints, ticks, deques, w, ts, cutoff, width):
    """Before adding the first tick of a new epoch: evict what left window ``w``, then turn
    every tick that stays into a suffix sum (from the newest back)."""
    mask = ticks.shape[0] - 1
    start = ints[I_START + w]
    tail = ints[I_TAIL]
    ints[I_WORK] += tail - start
    start = _evict(fs, ints, ticks, deques, w, start, tail, cutoff)
    ints[I_START + w] = start
    r2 = spread = imb = 0.0
    column = C_SUFFIX + 3 * w
    for i in range(tail - 1, start - 1, -1):
        row = i & mask
        r2 += ticks[row, C_R2]
        spread += ticks[row, C_SPREAD]
        imb += ticks[row, C_IMB]
        ticks[row, column] = r2
        ticks[row, column + 1] = spread
        ticks[row, column + 2] = imb
    ints[I_FRONT_END + w] = tail
    for c in range(3):
        fs[F_BACK + 3 * w + c] = 0.0
    fs[F_BOUNDARY + w] = (ts // width + 1.0) * width


@njit(cache=True)
def _evict(fs, ints, ticks, deques, w, start, end, cutoff):
    """Drop window ``w``'s ticks from ``start`` (before ``end``) at or before ``cutoff``: their
    counts leave, the last one dropped becomes where returns start, and the high and low
    candidates follow. The window's new start."""
    mask = ticks.shape[0] - 1
    first = start
    while start < end and ticks[start & mask, C_TS] <= cutoff:
        row = start & mask
        ints[I_N_RET + w] -= np.int64(ticks[row, C_HAS_R])
        ints[I_N_SPREAD + w] -= np.int64(ticks[row, C_HAS_SPREAD])
        ints[I_N_IMB + w] -= np.int64(ticks[row, C_HAS_IMB])
        start += 1
    if start != first:
        old = (start - 1) & mask
        fs[F_BASE_TS + w] = ticks[old, C_TS]
        fs[F_BASE_MID + w] = ticks[old, C_MID]
        if w < 3:
            _evict_deque(ints, ticks, deques, 2 * w, cutoff)
            _evict_deque(ints, ticks, deques, 2 * w + 1, cutoff)
    return start


@njit(cache=True)
def _evict_deque(ints, ticks, deques, d, cutoff):
    mask = ticks.shape[0] - 1
    head = ints[I_HEAD + d]
    tail = ints[I_DEQUE_TAIL + d]
    while head < tail and ticks[deques[d, head & mask] & mask, C_TS] <= cutoff:
        head += 1
    ints[I_WORK] += head - ints[I_HEAD + d]
    ints[I_HEAD + d] = head


@njit(cache=True)
def _add_tick(fs, ints, ticks, deques, w, ts, cutoff, width, mid, r2, spread, imb, flags):
    """Window ``w`` takes the tick at ``ints[I_TAIL]`` and drops the ticks at or before
    ``cutoff`` (the newest always stays)."""
    mask = ticks.shape[0] - 1
    if ts >= fs[F_BOUNDARY + w]:
        _new_epoch(fs, ints, ticks, deques, w, ts, cutoff, width)  # evicts too
    tail = ints[I_TAIL]
    fs[F_BACK + 3 * w] += r2
    fs[F_BACK + 3 * w + 1] += spread
    fs[F_BACK + 3 * w + 2] += imb
    ints[I_N_RET + w] += flags[0]
    ints[I_N_SPREAD + w] += flags[1]
    ints[I_N_IMB + w] += flags[2]
    if w < 3:
        highs, lows = 2 * w, 2 * w + 1
        head, top = ints[I_HEAD + highs], ints[I_DEQUE_TAIL + highs]
        while top > head and ticks[deques[highs, (top - 1) & mask] & mask, C_MID] <= mid:
            top -= 1
        ints[I_WORK] += ints[I_DEQUE_TAIL + highs] - top
        deques[highs, top & mask] = tail
        ints[I_DEQUE_TAIL + highs] = top + 1
        head, top = ints[I_HEAD + lows], ints[I_DEQUE_TAIL + lows]
        while top > head and ticks[deques[lows, (top - 1) & mask] & mask, C_MID] >= mid:
            top -= 1
        ints[I_WORK] += ints[I_DEQUE_TAIL + lows] - top
        deques[lows, top & mask] = tail
        ints[I_DEQUE_TAIL + lows] = top + 1
    first = ints[I_START + w]
    # the ticks evicted here are all before the epoch's start: in front
    start = _evict(fs, ints, ticks, deques, w, first, tail, cutoff)
    ints[I_WORK] += start - first
    ints[I_START + w] = start


@njit(cache=True)
def _front(ints, ticks, w, c):
    """The suffix sum ``c`` of window ``w``'s ticks before its epoch, 0.0 if there are none."""
    start = ints[I_START + w]
    if start < ints[I_FRONT_END + w]:
        return ticks[start & (ticks.shape[0] - 1), C_SUFFIX + 3 * w + c]
    return 0.0


@njit(cache=True)
def _second_vol(fs, ints, seconds, s, ts, width):
    """sqrt of the sum of squared 1-s returns over complete seconds in ``(ts - width, ts)``."""
    mask = seconds.shape[0] - 1
    cutoff = ts - width
    start = ints[I_SECOND_START + s]
    tail = ints[I_SECOND_TAIL]
    while start < tail and seconds[start & mask, S_SECOND] <= cutoff:
        start += 1  # before the epoch's start (in front) unless a new epoch begins here
    ints[I_WORK] += start - ints[I_SECOND_START + s]
    ints[I_SECOND_START + s] = start
    if ts >= fs[F_SECOND_BOUNDARY + s]:  # rebuild both stacks around the new epoch's start
        epoch = ts // width * width
        ints[I_WORK] += tail - start
        front_end = start
        while front_end < tail and seconds[front_end & mask, S_SECOND] < epoch:
            front_end += 1
        total = 0.0
        for i in range(front_end - 1, start - 1, -1):
            total += seconds[i & mask, S_R2]
            seconds[i & mask, S_SUFFIX + s] = total
        back = 0.0
        for i in range(front_end, tail):
            back += seconds[i & mask, S_R2]
        ints[I_SECOND_FRONT_END + s] = front_end
        fs[F_SECOND_BACK + s] = back
        fs[F_SECOND_BOUNDARY + s] = epoch + width
    front = 0.0
    if start < ints[I_SECOND_FRONT_END + s]:
        front = seconds[start & mask, S_SUFFIX + s]
    return math.sqrt(front + fs[F_SECOND_BACK + s])


@njit(cache=True)
def _advance_grid(config, fs, ints, seconds, ts, prev_mid):
    """Complete the 1-second grid up to the last second before ``ts``; the 1-s volatilities
    (``features`` docstring of the grid: O(1) a tick, reused within one second)."""
    last_complete = np.ceil(ts) - 1.0
    floor_ts = np.floor(ts)
    if last_complete >= fs[F_NEXT_SECOND]:
        second = fs[F_NEXT_SECOND]
        if fs[F_FIRST_SECOND] < 0:
            fs[F_FIRST_SECOND] = second
        else:
            r = math.log(prev_mid / fs[F_GRID_MID])
            if r:
                row = ints[I_SECOND_TAIL] & (seconds.shape[0] - 1)
                seconds[row, S_SECOND] = second
                seconds[row, S_R2] = r * r
                ints[I_SECOND_TAIL] += 1
                fs[F_SECOND_BACK] += r * r
                fs[F_SECOND_BACK + 1] += r * r
        fs[F_GRID_MID] = prev_mid
        fs[F_NEXT_SECOND] = last_complete + 1.0
    elif floor_ts == fs[F_VOLS_FLOOR]:
        return
    if fs[F_FIRST_SECOND] < 0 or last_complete <= fs[F_FIRST_SECOND]:
        fs[F_VOL_60] = NAN  # no complete 1-second return yet
        fs[F_VOL_300] = NAN
    else:
        fs[F_VOL_60] = _second_vol(fs, ints, seconds, 0, ts, config[K_SECOND_WIDTH])
        fs[F_VOL_300] = _second_vol(fs, ints, seconds, 1, ts, config[K_SECOND_WIDTH + 1])
    fs[F_VOLS_FLOOR] = floor_ts


@njit(cache=True)
def run(
    order, start_at, numbers, codes, config, fs, ints, ticks, deques, seconds, sources, source_ts,
    values, row_ts, mids, segments, status,
):  # fmt: skip
    """Run the ticks ``order[start_at:]`` (rows of ``numbers``: ts, price, bid, ask, bid and ask
    quantity; of ``codes``: sequence number, index, source code) of one product through its
    state; write each tick's outcome (``status``) and, if taken, its row. Returns where it
    stopped: ``len(order)``, or the first tick it had no room for (``ints[I_NEEDS]`` says which
    ring to grow)."""
    late_tolerance, max_gap = config[K_LATE_TOLERANCE], config[K_MAX_GAP]
    max_sources, max_rate = config[K_MAX_SOURCES], config[K_MAX_RATE]
    flags = np.zeros(3, dtype=np.int64)
    for k in range(start_at, len(order)):
        j = order[k]
        out = values[j]
        out[:] = NAN
        ts_in = numbers[j, 0]
        row_ts[j] = ts_in
        bid, ask = numbers[j, 2], numbers[j, 3]
        has_spread = bid == bid and ask == ask
        mid = (bid + ask) * 0.5 if has_spread else numbers[j, 1]
        mids[j] = mid
        if not (MIN_PRICE <= mid <= MAX_PRICE and -math.inf < ts_in < math.inf):
            status[j] = OUT_OF_BOUNDS_MID
            continue
        spread = BPS * (ask - bid) / mid if has_spread else NAN
        bid_qty, ask_qty = numbers[j, 4], numbers[j, 5]
        depth = bid_qty + ask_qty
        has_imb = depth > 0.0
        imbalance = (bid_qty - ask_qty) / depth if has_imb else NAN
        spread_term = spread if has_spread else 0.0
        imb_term = imbalance if has_imb else 0.0
        if not (0.0 <= spread_term <= MAX_SPREAD_BPS and -1.0 <= imb_term <= 1.0):
            out[0], out[1] = spread, imbalance
            status[j] = OUT_OF_BOUNDS_TERMS
            continue
        tail = ints[I_TAIL]
        if tail - ints[I_START + 3] >= ticks.shape[0]:
            ints[I_NEEDS] = NEEDS_TICK_ROOM
            return k
        if ints[I_SECOND_TAIL] - ints[I_SECOND_START + 1] >= seconds.shape[0]:
            ints[I_NEEDS] = NEEDS_SECOND_ROOM
            return k

        seq, index, source = codes[j, 0], codes[j, 1], codes[j, 2]
        slot = -1
        if seq >= 0:
            for i in range(ints[I_SOURCES]):
                if sources[i, R_CODE] == source:
                    slot = i
                    break
            if slot >= 0:
                last_seq, last_index = sources[slot, R_SEQ], sources[slot, R_INDEX]
                reach = max_rate * (1.0 + abs(ts_in - source_ts[slot]))
                if seq < last_seq or (seq == last_seq and index <= last_index):
                    if last_seq - seq <= reach:
                        status[j] = DUPLICATE
                        continue
                elif seq - last_seq > reach:
                    status[j] = SEQUENCE_JUMP
                    continue

        ts = ts_in
        last_ts = fs[F_LAST_TS]
        outcome = TAKEN
        if ts < last_ts:
            if last_ts - ts > late_tolerance:
                status[j] = LATE_DROPPED
                continue
            outcome = TAKEN_LATE
            ts = last_ts
        elif ts - last_ts > max_gap:
            restart(fs, ints)
            outcome = TAKEN_AFTER_GAP
        if seq >= 0:
            if slot < 0:
                if ints[I_SOURCES] < max_sources:
                    slot = ints[I_SOURCES]
                    ints[I_SOURCES] += 1
                else:  # forget the source added first
                    slot = np.argmin(sources[: ints[I_SOURCES], R_ADDED])
                sources[slot, R_CODE] = source
                sources[slot, R_ADDED] = ints[I_CLOCK]
                ints[I_CLOCK] += 1
            sources[slot, R_SEQ] = seq
            sources[slot, R_INDEX] = index
            source_ts[slot] = ts_in
        fs[F_LAST_TS] = ts
        status[j] = outcome

        prev_mid = fs[F_LAST_MID]
        fs[F_LAST_MID] = mid
        if prev_mid == prev_mid:
            r = math.log(mid / prev_mid)
            r2 = r * r
            flags[0] = 1
            _advance_grid(config, fs, ints, seconds, ts, prev_mid)
            vol_60, vol_300 = fs[F_VOL_60], fs[F_VOL_300]
        else:  # a segment's first tick: no return yet, and it starts the 1-second grid
            r2 = 0.0
            flags[0] = 0
            fs[F_NEXT_SECOND] = np.ceil(ts)
            vol_60 = vol_300 = NAN
        flags[1] = 1 if has_spread else 0
        flags[2] = 1 if has_imb else 0
        row = tail & (ticks.shape[0] - 1)
        ticks[row, C_TS] = ts
        ticks[row, C_MID] = mid
        ticks[row, C_R2] = r2
        ticks[row, C_SPREAD] = spread_term
        ticks[row, C_IMB] = imb_term
        ticks[row, C_HAS_R] = flags[0]
        ticks[row, C_HAS_SPREAD] = flags[1]
        ticks[row, C_HAS_IMB] = flags[2]

        # a per-window feature sits at k + 3 * (its position in features._PER_WINDOW)
        m_60 = 0
        sum_r2_60 = NAN
        for w in range(3):
            width = config[K_WIDTH + w]
            _add_tick(
                fs, ints, ticks, deques, w, ts, ts - width, width, mid, r2, spread_term,
                imb_term, flags,
            )  # fmt: skip
            mask = ticks.shape[0] - 1
            start = ints[I_START + w]
            m = ints[I_N_RET + w]
            if m:
                base_mid = fs[F_BASE_MID + w]
                if base_mid == base_mid:
                    base_ts = fs[F_BASE_TS + w]
                else:  # nothing evicted yet: returns start at the segment's first tick
                    base_ts = ticks[start & mask, C_TS]
                    base_mid = ticks[start & mask, C_MID]
                log_ret = math.log(mid / base_mid)
                out[w] = log_ret
                sum_r2 = _front(ints, ticks, w, 0) + fs[F_BACK + 3 * w]
                out[w + 3] = math.sqrt(sum_r2)
                elapsed = ts - base_ts
                if elapsed >= 1.0:
                    out[w + 6] = BPS * log_ret / elapsed
                if w == 1:
                    m_60 = m
                    sum_r2_60 = sum_r2
            high = ticks[deques[2 * w, ints[I_HEAD + 2 * w] & mask] & mask, C_MID]
            low = ticks[deques[2 * w + 1, ints[I_HEAD + 2 * w + 1] & mask] & mask, C_MID]
            out[w + 9] = BPS * math.log(high / low)
            if ints[I_N_SPREAD + w]:
                out[w + 12] = (_front(ints, ticks, w, 1) + fs[F_BACK + 3 * w + 1]) / ints[
                    I_N_SPREAD + w
                ]
            if ints[I_N_IMB + w]:
                out[w + 15] = (_front(ints, ticks, w, 2) + fs[F_BACK + 3 * w + 2]) / ints[
                    I_N_IMB + w
                ]
            out[w + 18] = (tail + 1 - start) / width

        # 60 s tick-return moments; the sum of the returns telescopes to the 60 s log return
        if m_60:
            log_ret_60 = out[1]
            out[21] = log_ret_60 / m_60
            if m_60 > 1:
                var = (sum_r2_60 - log_ret_60 * out[21]) / (m_60 - 1)
                out[22] = math.sqrt(var) if var > 0.0 else 0.0
        out[23] = float(tail + 1 - ints[I_START + 1])
        out[24] = spread
        out[25] = imbalance
        out[26] = vol_60
        out[27] = vol_300
        vol_300_ticks = out[5]
        if vol_300_ticks > 0.0:
            out[28] = out[3] * SCALE_30_300 / vol_300_ticks
            out[29] = out[4] * SCALE_60_300 / vol_300_ticks
        _regime_ratios(config, fs, ints, ticks, deques, ts, mid, spread_term, flags, out)
        ints[I_TAIL] = tail + 1
        row_ts[j] = ts
        segments[j] = ints[I_SEGMENT]
    return len(order)


@njit(cache=True)
def _regime_ratios(config, fs, ints, ticks, deques, ts, mid, spread_term, flags, out):
    """Add the tick to the regime window; tick intensity and mean spread over the 30 and 60 s
    windows as ratios to their levels over it (``features._regime_ratios`` before)."""
    w = 3
    width = config[K_WIDTH + w]
    mask = ticks.shape[0] - 1
    _add_tick(
        fs, ints, ticks, deques, w, ts, ts - width, width, mid, 0.0, spread_term, 0.0, flags
    )  # fmt: skip
    start = ints[I_START + w]
    count = ints[I_TAIL] + 1 - start
    base_ts = fs[F_BASE_TS + w]
    covered = width if base_ts == base_ts else ts - ticks[start & mask, C_TS]
    level_rate = count / covered if covered > 0.0 else NAN
    level_spread = NAN
    if ints[I_N_SPREAD + w]:
        level_spread = (_front(ints, ticks, w, 1) + fs[F_BACK + 3 * w + 1]) / ints[I_N_SPREAD + w]
    for i in range(2):  # the 30 and 60 s windows
        out[30 + i] = out[i + 18] / level_rate if covered >= config[K_WIDTH + i] else NAN
        out[32 + i] = out[i + 12] / level_spread if level_spread > 0.0 else NAN


def new_state(max_sources: int, tick_capacity: int = 1024, second_capacity: int = 512) -> list:
    """A product's state before its first tick: ``[fs, ints, ticks, deques, seconds, sources,
    source_ts]`` (capacities are powers of two)."""
    fs = np.zeros(N_FLOATS)
    ints = np.zeros(N_INTS, dtype=np.int64)
    fs[F_LAST_TS] = NAN
    ints[I_SEGMENT] = -1
    state = [
        fs,
        ints,
        np.zeros((tick_capacity, N_TICK_COLUMNS)),
        np.zeros((6, tick_capacity), dtype=np.int64),
        np.zeros((second_capacity, N_SECOND_COLUMNS)),
        np.zeros((max_sources, 4), dtype=np.int64),
        np.zeros(max_sources),
    ]
    restart(fs, ints)
    return state


def grow(state: list) -> None:
    """Double the ring a call ran out of (``ints[I_NEEDS]``), keeping every live entry at the
    position its number maps to in the larger ring."""
    ints, ticks, deques, seconds = state[1:5]
    if ints[I_NEEDS] == NEEDS_TICK_ROOM:
        old_mask, capacity = ticks.shape[0] - 1, 2 * ticks.shape[0]
        live = np.arange(ints[I_START : I_START + N_WINDOWS].min(), ints[I_TAIL])
        bigger = np.zeros((capacity, N_TICK_COLUMNS))
        bigger[live & (capacity - 1)] = ticks[live & old_mask]
        bigger_deques = np.zeros((6, capacity), dtype=np.int64)
        for d in range(6):
            held = np.arange(ints[I_HEAD + d], ints[I_DEQUE_TAIL + d])
            bigger_deques[d, held & (capacity - 1)] = deques[d, held & old_mask]
        state[2], state[3] = bigger, bigger_deques
    elif ints[I_NEEDS] == NEEDS_SECOND_ROOM:
        old_mask, capacity = seconds.shape[0] - 1, 2 * seconds.shape[0]
        live = np.arange(ints[I_SECOND_START : I_SECOND_START + 2].min(), ints[I_SECOND_TAIL])
        bigger = np.zeros((capacity, N_SECOND_COLUMNS))
        bigger[live & (capacity - 1)] = seconds[live & old_mask]
        state[4] = bigger
    ints[I_NEEDS] = 0
