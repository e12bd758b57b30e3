"""Token usage of a conversation and what it cost, in USD.

Prices come from settings.CHAT_PRICES (USD per million tokens: input, output, cache write, cache
read), a local table. Anthropic counts a request's input in three parts, each at its own price:
`input_tokens` (neither read from nor written to the prompt cache), `cache_creation_input_tokens`
and `cache_read_input_tokens`.
Amounts are Decimals: a conversation's cost is a sum of many tiny amounts that floats would blur.
Counts the provider never reported (a stopped reply's output, a reply still streaming) are
estimates, and say so: every figure built from one carries a "~".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

MILLION = Decimal(1_000_000)
SMALLEST_SHOWN = Decimal("0.000001")

Amount = float | int | str | Decimal
#: (input, output) or (input, output, cache write, cache read), USD per million tokens.
Prices = Mapping[str, tuple[Amount, ...]]

#: Anthropic's cache prices relative to the input price, for a table that gives only two prices:
#: a 5-minute cache write costs 1.25x, a read 0.1x.
CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of one model."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal


@dataclass(frozen=True, slots=True)
class ModelTotals:
    """The assistant messages of one conversation with one model (and one estimate flag), summed:
    one row of the aggregate in `selectors.conversation_usage`."""

    model: str
    input_tokens: int
    output_tokens: int
    replies: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    input_missing: bool = False
    """Some reply has no input token count (it never started, or is still streaming)."""
    output_estimated: bool = False
    """Some reply's output count is an estimate from its text, or missing."""


@dataclass(frozen=True, slots=True)
class ConversationUsage:
    """Tokens used by a conversation's replies and their cost.

    `cost_usd` is None when no model of the conversation has a price; `priced` is False when
    some model has none (then `cost_usd`, if any, covers only the priced ones).
    """

    input_tokens: int
    output_tokens: int
    estimated: bool
    cost_usd: Decimal | None
    priced: bool
    replies: int = 0
    input_estimated: bool = False
    output_estimated: bool = False
    unpriced_models: tuple[str, ...] = ()
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def input_text(self) -> str:
        return f"{'~' if self.input_estimated else ''}{self.input_tokens:,}"

    @property
    def cached_text(self) -> str:
        """Input read from the prompt cache, or "" when none was."""
        return f"{self.cache_read_tokens:,}" if self.cache_read_tokens else ""

    @property
    def cache_write_text(self) -> str:
        """Input written to the prompt cache, or "" when none was."""
        return f"{self.cache_creation_tokens:,}" if self.cache_creation_tokens else ""

    @property
    def output_text(self) -> str:
        return f"{'~' if self.output_estimated else ''}{self.output_tokens:,}"

    @property
    def cost_text(self) -> str:
        """`$0.0123`, `~$0.0123` (from estimated counts), `$0.0123 + unknown` (some model has
        no price) or `cost unknown` (none has)."""
        if self.cost_usd is None:
            return "cost unknown"
        text = f"{'~' if self.estimated else ''}{format_usd(self.cost_usd)}"
        return text if self.priced else f"{text} + unknown"

    @property
    def description(self) -> str:
        """A longer account of the figures, for a tooltip."""
        parts = [
            f"Tokens used by this conversation's replies: {self.input_tokens:,} input, "
            f"{self.output_tokens:,} output."
        ]
        if self.cache_read_tokens or self.cache_creation_tokens:
            parts.append(
                f"Besides that input: {self.cache_read_tokens:,} read from Anthropic's prompt "
                f"cache (at the cache-read price) and {self.cache_creation_tokens:,} written to "
                "it (at the cache-write price)."
            )
        if self.estimated:
            parts.append(
                "~ marks estimates: a stopped or unfinished reply never reports all its tokens."
            )
        if self.cost_usd is not None:
            parts.append("Cost at this site's price table (USD per million tokens).")
        if self.unpriced_models:
            parts.append(f"No price is known for {', '.join(self.unpriced_models)}.")
        return " ".join(parts)


def format_usd(amount: Decimal) -> str:
    """Dollars with enough precision to be meaningful: cents from $0.10 up, three significant
    digits below (`$0.0123`, `$0.000456`), never more than six decimals."""
    if amount == 0:
        return "$0.00"
    if amount < SMALLEST_SHOWN:
        return f"<${SMALLEST_SHOWN}"
    # adjusted() is the exponent of the leading digit: -2 for 0.0123.
    places = 2 if amount >= Decimal("0.1") else min(6, 2 - amount.adjusted())
    text = f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.rstrip('0').ljust(2, '0')}"


def price_for(model: str, prices: Prices | None = None) -> Price | None:
    """What a model's tokens cost, or None if the table has no price for it."""
    table: Prices = settings.CHAT_PRICES if prices is None else prices
    row = table.get(model)
    if row is None:
        return None
    amounts = [Decimal(str(amount)) for amount in row]
    if len(amounts) == 2:
        amounts += [amounts[0] * CACHE_WRITE_FACTOR, amounts[0] * CACHE_READ_FACTOR]
    return Price(*amounts[:4])


def cost_of(row: ModelTotals, price: Price) -> Decimal:
    """USD for one model's tokens."""
    return (
        row.input_tokens * price.input
        + row.cache_creation_tokens * price.cache_write
        + row.cache_read_tokens * price.cache_read
        + row.output_tokens * price.output
    ) / MILLION


def usage_from_totals(
    totals: Iterable[ModelTotals], *, prices: Prices | None = None
) -> ConversationUsage:
    """Sum a conversation's per-model totals and price each model's tokens.

    A conversation without replies used nothing and cost $0.00.
    """
    by_model: dict[str, ModelTotals] = {}
    for row in totals:
        seen = by_model.get(row.model)
        by_model[row.model] = (
            row
            if seen is None
            else ModelTotals(
                model=row.model,
                input_tokens=seen.input_tokens + row.input_tokens,
                output_tokens=seen.output_tokens + row.output_tokens,
                replies=seen.replies + row.replies,
                cache_read_tokens=seen.cache_read_tokens + row.cache_read_tokens,
                cache_creation_tokens=seen.cache_creation_tokens + row.cache_creation_tokens,
                input_missing=seen.input_missing or row.input_missing,
                output_estimated=seen.output_estimated or row.output_estimated,
            )
        )
    rows = [row for row in by_model.values() if row.replies]
    cost = Decimal(0)
    any_priced = False
    unpriced: list[str] = []
    for row in rows:
        price = price_for(row.model, prices)
        if price is None:
            unpriced.append(row.model or "an unnamed model")
            continue
        any_priced = True
        cost += cost_of(row, price)
    input_estimated = any(row.input_missing for row in rows)
    output_estimated = any(row.output_estimated for row in rows)
    return ConversationUsage(
        input_tokens=sum(row.input_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        estimated=input_estimated or output_estimated,
        cost_usd=cost if any_priced or not rows else None,
        priced=not unpriced,
        replies=sum(row.replies for row in rows),
        input_estimated=input_estimated,
        output_estimated=output_estimated,
        unpriced_models=tuple(sorted(unpriced)),
        cache_read_tokens=sum(row.cache_read_tokens for row in rows),
        cache_creation_tokens=sum(row.cache_creation_tokens for row in rows),
    )
