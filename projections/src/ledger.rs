//! The `ledger` projection: a double-entry journal derived from payment events.
//!
//! Each event that moves money posts one *entry*: a few *lines* in `journal_entries`, keyed
//! by the event's `(global_position, line)`, each with exactly one of `debit` / `credit`
//! above zero; the lines of an entry sum to zero per currency (checked here before anything
//! is written: an unbalanced entry is a bug and the event is refused as
//! [`ProjectionError::Poison`]). `account_balances` keeps running totals per account and
//! currency (`balance = debit_total - credit_total`), and `merchant_account_balances` the
//! same totals restricted to one merchant's payments, so a checkout key sees its share of the
//! shared accounts. Every line belongs to one payment, hence to one merchant.
//!
//! # Accounts
//!
//! - `merchant:<merchant_id>:payable`: what payledger owes the merchant (credit balance).
//! - `provider:<provider>:clearing`: what the provider owes payledger for captured money.
//! - `provider:<provider>:authorizations`: authorization holds the provider has placed.
//! - `customer:funds_in_flight`: customer funds held by open authorizations.
//! - `platform:fees`: fees taken at approval.
//!
//! # Postings (A authorized, C captured, F fee, R refunded)
//!
//! | event | lines |
//! |---|---|
//! | `PaymentAuthorized(A)` | hold: Dr `customer:funds_in_flight` A / Cr `provider:<p>:authorizations` A |
//! | `PaymentApproved` with `capture_id` (capture of an authorization, C <= A) | hold release of the whole hold: Dr `provider:<p>:authorizations` A / Cr `customer:funds_in_flight` A; capture: Dr `provider:<p>:clearing` C / Cr `merchant:<m>:payable` C |
//! | `PaymentApproved` without `capture_id` (automatic capture) | capture: Dr `provider:<p>:clearing` C / Cr `merchant:<m>:payable` C |
//! | `PaymentApproved.fee` = F > 0 (either kind) | fee: Dr `merchant:<m>:payable` F / Cr `platform:fees` F |
//! | `PaymentVoided(A)` | hold release: Dr `provider:<p>:authorizations` A / Cr `customer:funds_in_flight` A |
//! | `PaymentRefunded(R)` | refund: Dr `merchant:<m>:payable` R / Cr `provider:<p>:clearing` R |
//! | anything else | nothing (`RefundRequested` is a reservation, not money) |
//!
//! So the credit balance of `merchant:<m>:payable` is captured - refunded - fees, and the
//! authorization accounts return to zero once every hold is captured or voided.
//!
//! The provider of a hold release is the one whose account holds the hold, and the provider
//! of a refund the one whose clearing account received the capture; both are remembered per
//! payment in `ledger_payments` (with merchant, currency, the current provider and running
//! amounts), so the projection reads nothing but its own tables.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Currency, Money, PaymentEvent, PublishedEvent};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

pub const NAME: &str = "ledger";

/// Customer funds held by open authorizations.
pub const CUSTOMER_FUNDS_IN_FLIGHT: &str = "customer:funds_in_flight";
/// Fees taken at approval.
pub const PLATFORM_FEES: &str = "platform:fees";

/// Rows a read returns at most, whatever `limit` asks.
pub const READ_LIMIT_MAX: i64 = 1000;

/// What payledger owes `merchant_id`.
pub fn merchant_payable(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}:payable")
}

/// What `provider` owes payledger for captured money.
pub fn provider_clearing(provider: &str) -> String {
    format!("provider:{provider}:clearing")
}

/// Authorization holds `provider` has placed.
pub fn provider_authorizations(provider: &str) -> String {
    format!("provider:{provider}:authorizations")
}

pub struct LedgerProjection;

#[async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "ledger_payments",
            "journal_entries",
            "account_balances",
            "merchant_account_balances",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &PublishedEvent,
    ) -> Result<(), ProjectionError> {
        let poison = |reason: String| ProjectionError::Poison {
            message_id: event.message_id(),
            reason,
        };
        let payload = event
            .payment_event()
            .map_err(|e| poison(format!("payload does not decode: {e}")))?;
        let id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|e| poison(format!("aggregate id is not a uuid: {e}")))?;
        if !concerns_ledger(&payload) {
            return Ok(());
        }
        let context = if matches!(payload, PaymentEvent::PaymentInitiated { .. }) {
            None
        } else {
            Some(load(conn, id).await?.ok_or_else(|| {
                poison("no PaymentInitiated was seen for this payment".to_owned())
            })?)
        };
        let step = step(context.as_ref(), &payload).map_err(poison)?;
        check_balanced(&step.lines).map_err(|e| poison(format!("unbalanced entry: {e}")))?;
        save(
            conn,
            id,
            &step.context,
            event.global_position,
            context.is_none(),
        )
        .await?;
        if !step.lines.is_empty() {
            post(conn, id, event, &payload, &step).await?;
        }
        Ok(())
    }
}

/// Whether the ledger does anything with this event (money, or context it needs later).
fn concerns_ledger(event: &PaymentEvent) -> bool {
    match event {
        PaymentEvent::PaymentInitiated { .. }
        | PaymentEvent::ProviderTransactionCreated { .. }
        | PaymentEvent::PaymentAuthorized { .. }
        | PaymentEvent::PaymentApproved { .. }
        | PaymentEvent::PaymentDeclined { .. }
        | PaymentEvent::PaymentVoided { .. }
        | PaymentEvent::PaymentRefunded { .. } => true,
        // No money moves: a failed attempt, a failure or expiry of a pending payment (nothing
        // was held), a refund reservation and its release.
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::PaymentFailed { .. }
        | PaymentEvent::PaymentExpired { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::RefundFailed { .. } => false,
    }
}

/// What the ledger remembers about one payment (a row of `ledger_payments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentContext {
    pub merchant_id: String,
    pub currency: String,
    /// The provider holding the payment now.
    pub provider: String,
    /// Whose authorizations account holds the open hold, if any.
    pub hold_provider: Option<String>,
    pub hold_amount: Decimal,
    /// Whose clearing account received the capture, once captured.
    pub capture_provider: Option<String>,
    pub captured_amount: Decimal,
    pub fee_amount: Decimal,
    pub refunded_amount: Decimal,
}

/// One line of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `authorization_hold`, `hold_release`, `capture`, `fee` or `refund`.
    pub posting: &'static str,
    pub account: String,
    pub currency: String,
    pub debit: Decimal,
    pub credit: Decimal,
}

/// What one event does: its lines, and the payment's context after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub lines: Vec<Line>,
    pub context: PaymentContext,
}

/// Zero at the currency's scale, so totals print as `0.00` and not `0`.
fn zero(currency: Currency) -> Decimal {
    Money::zero(currency).amount()
}

/// Dr `debit_account` / Cr `credit_account` of `money` (nothing for a zero amount).
fn transfer(
    lines: &mut Vec<Line>,
    posting: &'static str,
    debit_account: String,
    credit_account: String,
    money: Money,
) {
    if money.is_zero() {
        return;
    }
    let currency = money.currency();
    lines.push(Line {
        posting,
        account: debit_account,
        currency: currency.code().to_owned(),
        debit: money.amount(),
        credit: zero(currency),
    });
    lines.push(Line {
        posting,
        account: credit_account,
        currency: currency.code().to_owned(),
        debit: zero(currency),
        credit: money.amount(),
    });
}

/// The ledger's decision for one event, given what it knows of the payment (`None` before
/// `PaymentInitiated`). Pure: the same context and event always give the same step. An
/// `Err` is an event the ledger cannot post (its reason).
pub fn step(context: Option<&PaymentContext>, event: &PaymentEvent) -> Result<Step, String> {
    let mut lines = Vec::new();
    let current = match (context, event) {
        (
            None,
            PaymentEvent::PaymentInitiated {
                merchant_id,
                amount,
                provider,
                ..
            },
        ) => {
            let zero = zero(amount.currency());
            return Ok(Step {
                lines,
                context: PaymentContext {
                    merchant_id: merchant_id.as_str().to_owned(),
                    currency: amount.currency().code().to_owned(),
                    provider: provider.clone(),
                    hold_provider: None,
                    hold_amount: zero,
                    capture_provider: None,
                    captured_amount: zero,
                    fee_amount: zero,
                    refunded_amount: zero,
                },
            });
        }
        (Some(_), PaymentEvent::PaymentInitiated { .. }) => {
            return Err("PaymentInitiated for a payment already initiated".to_owned())
        }
        (None, _) => return Err("no PaymentInitiated was seen for this payment".to_owned()),
        (Some(context), _) => context,
    };
    let mut next = current.clone();
    let same_currency = |money: &Money| {
        if money.currency().code() == current.currency {
            Ok(())
        } else {
            Err(format!(
                "{} is not in the payment's currency {}",
                money, current.currency
            ))
        }
    };
    let payable = merchant_payable(&current.merchant_id);
    match event {
        PaymentEvent::PaymentInitiated { .. } => {}
        PaymentEvent::ProviderTransactionCreated { provider, .. }
        | PaymentEvent::PaymentDeclined { provider, .. } => next.provider = provider.clone(),
        PaymentEvent::PaymentAuthorized {
            provider, amount, ..
        } => {
            same_currency(amount)?;
            if current.hold_provider.is_some() {
                return Err("a second authorization while a hold is open".to_owned());
            }
            transfer(
                &mut lines,
                "authorization_hold",
                CUSTOMER_FUNDS_IN_FLIGHT.to_owned(),
                provider_authorizations(provider),
                *amount,
            );
            next.provider = provider.clone();
            next.hold_provider = Some(provider.clone());
            next.hold_amount = amount.amount();
        }
        PaymentEvent::PaymentApproved {
            provider,
            capture_id,
            amount,
            fee,
            ..
        } => {
            same_currency(amount)?;
            if current.capture_provider.is_some() {
                return Err("a second capture of the same payment".to_owned());
            }
            if capture_id.is_some() {
                let (hold_provider, hold) = open_hold(current)?;
                if amount.amount() > hold.amount() {
                    return Err(format!("capture of {amount} exceeds the hold of {hold}"));
                }
                transfer(
                    &mut lines,
                    "hold_release",
                    provider_authorizations(hold_provider),
                    CUSTOMER_FUNDS_IN_FLIGHT.to_owned(),
                    hold,
                );
                next.hold_provider = None;
                next.hold_amount = zero(amount.currency());
            }
            transfer(
                &mut lines,
                "capture",
                provider_clearing(provider),
                payable.clone(),
                *amount,
            );
            next.provider = provider.clone();
            next.capture_provider = Some(provider.clone());
            next.captured_amount = amount.amount();
            if let Some(fee) = fee {
                same_currency(fee)?;
                transfer(&mut lines, "fee", payable, PLATFORM_FEES.to_owned(), *fee);
                next.fee_amount = fee.amount();
            }
        }
        PaymentEvent::PaymentVoided { amount, .. } => {
            same_currency(amount)?;
            let (hold_provider, hold) = open_hold(current)?;
            if hold != *amount {
                return Err(format!("void of {amount} but the open hold is {hold}"));
            }
            transfer(
                &mut lines,
                "hold_release",
                provider_authorizations(hold_provider),
                CUSTOMER_FUNDS_IN_FLIGHT.to_owned(),
                hold,
            );
            next.hold_provider = None;
            next.hold_amount = zero(amount.currency());
        }
        PaymentEvent::PaymentRefunded { amount, .. } => {
            same_currency(amount)?;
            let capture_provider = current
                .capture_provider
                .as_deref()
                .ok_or("a refund of a payment never captured")?;
            let refunded = current.refunded_amount + amount.amount();
            if refunded > current.captured_amount {
                return Err(format!(
                    "refunds of {refunded} exceed the capture of {}",
                    current.captured_amount
                ));
            }
            transfer(
                &mut lines,
                "refund",
                payable,
                provider_clearing(capture_provider),
                *amount,
            );
            next.refunded_amount = refunded;
        }
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::PaymentFailed { .. }
        | PaymentEvent::PaymentExpired { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::RefundFailed { .. } => {}
    }
    Ok(Step {
        lines,
        context: next,
    })
}

/// The open hold of a payment: its provider and amount.
fn open_hold(context: &PaymentContext) -> Result<(&str, Money), String> {
    let provider = context
        .hold_provider
        .as_deref()
        .ok_or("no authorization hold is open")?;
    let currency = Currency::from_str(&context.currency).map_err(|e| e.to_string())?;
    let hold = Money::new(context.hold_amount, currency).map_err(|e| format!("hold: {e}"))?;
    Ok((provider, hold))
}

/// The double-entry invariant: no line negative, exactly one side of each line above zero,
/// and the lines summing to zero per currency.
pub fn check_balanced(lines: &[Line]) -> Result<(), String> {
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    for line in lines {
        if line.debit.is_sign_negative() && !line.debit.is_zero()
            || line.credit.is_sign_negative() && !line.credit.is_zero()
            || line.debit.is_zero() == line.credit.is_zero()
        {
            return Err(format!(
                "line on {} has debit {} and credit {}",
                line.account, line.debit, line.credit
            ));
        }
        *sums.entry(&line.currency).or_default() += line.debit - line.credit;
    }
    match sums.iter().find(|(_, sum)| !sum.is_zero()) {
        Some((currency, sum)) => Err(format!("{currency} lines sum to {sum}")),
        None => Ok(()),
    }
}

async fn load(conn: &mut PgConnection, id: Uuid) -> Result<Option<PaymentContext>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT merchant_id, currency, provider, hold_provider, hold_amount, capture_provider,
                captured_amount, fee_amount, refunded_amount
           FROM ledger_payments WHERE payment_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(PaymentContext {
            merchant_id: row.try_get("merchant_id")?,
            currency: row.try_get("currency")?,
            provider: row.try_get("provider")?,
            hold_provider: row.try_get("hold_provider")?,
            hold_amount: row.try_get("hold_amount")?,
            capture_provider: row.try_get("capture_provider")?,
            captured_amount: row.try_get("captured_amount")?,
            fee_amount: row.try_get("fee_amount")?,
            refunded_amount: row.try_get("refunded_amount")?,
        })
    })
    .transpose()
}

async fn save(
    conn: &mut PgConnection,
    id: Uuid,
    context: &PaymentContext,
    position: i64,
    new: bool,
) -> Result<(), sqlx::Error> {
    let sql = if new {
        "INSERT INTO ledger_payments
            (payment_id, merchant_id, currency, provider, hold_provider, hold_amount,
             capture_provider, captured_amount, fee_amount, refunded_amount, last_global_position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    } else {
        "UPDATE ledger_payments
            SET merchant_id = $2, currency = $3, provider = $4, hold_provider = $5,
                hold_amount = $6, capture_provider = $7, captured_amount = $8, fee_amount = $9,
                refunded_amount = $10, last_global_position = $11
          WHERE payment_id = $1"
    };
    let done = sqlx::query(sql)
        .bind(id)
        .bind(&context.merchant_id)
        .bind(&context.currency)
        .bind(&context.provider)
        .bind(&context.hold_provider)
        .bind(context.hold_amount)
        .bind(&context.capture_provider)
        .bind(context.captured_amount)
        .bind(context.fee_amount)
        .bind(context.refunded_amount)
        .bind(position)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// Writes the entry's lines and adds them to both balance tables.
async fn post(
    conn: &mut PgConnection,
    id: Uuid,
    event: &PublishedEvent,
    payload: &PaymentEvent,
    step: &Step,
) -> Result<(), sqlx::Error> {
    let lines = &step.lines;
    let numbers: Vec<i32> = (1..).take(lines.len()).collect();
    sqlx::query(
        "INSERT INTO journal_entries
            (global_position, line, payment_id, sequence, event_type, posting, merchant_id,
             account, currency, debit, credit, at)
         SELECT $1, t.line, $2, $3, $4, t.posting, $5, t.account, t.currency, t.debit, t.credit, $6
           FROM UNNEST($7::int[], $8::text[], $9::text[], $10::text[], $11::numeric[],
                       $12::numeric[]) AS t(line, posting, account, currency, debit, credit)",
    )
    .bind(event.global_position)
    .bind(id)
    .bind(event.sequence)
    .bind(payload.name())
    .bind(&step.context.merchant_id)
    .bind(payload.at())
    .bind(&numbers)
    .bind(lines.iter().map(|l| l.posting).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.account.as_str()).collect::<Vec<_>>())
    .bind(
        lines
            .iter()
            .map(|l| l.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(lines.iter().map(|l| l.debit).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.credit).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    // One row per (account, currency), in a fixed order: an upsert cannot touch a row twice,
    // and concurrent consumers then lock shared rows in the same order.
    let mut totals: BTreeMap<(&str, &str), (Decimal, Decimal, i64)> = BTreeMap::new();
    for line in lines {
        let total = totals
            .entry((line.account.as_str(), line.currency.as_str()))
            .or_insert((Decimal::ZERO, Decimal::ZERO, 0));
        total.0 += line.debit;
        total.1 += line.credit;
        total.2 += 1;
    }
    let accounts: Vec<&str> = totals.keys().map(|k| k.0).collect();
    let currencies: Vec<&str> = totals.keys().map(|k| k.1).collect();
    let debits: Vec<Decimal> = totals.values().map(|t| t.0).collect();
    let credits: Vec<Decimal> = totals.values().map(|t| t.1).collect();
    let counts: Vec<i64> = totals.values().map(|t| t.2).collect();
    sqlx::query(
        "INSERT INTO account_balances AS b
            (account, currency, debit_total, credit_total, lines, last_global_position)
         SELECT t.account, t.currency, t.debit, t.credit, t.lines, $6
           FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::bigint[])
                AS t(account, currency, debit, credit, lines)
         ON CONFLICT (account, currency) DO UPDATE
            SET debit_total = b.debit_total + EXCLUDED.debit_total,
                credit_total = b.credit_total + EXCLUDED.credit_total,
                lines = b.lines + EXCLUDED.lines,
                last_global_position = GREATEST(b.last_global_position,
                                                EXCLUDED.last_global_position)",
    )
    .bind(&accounts)
    .bind(&currencies)
    .bind(&debits)
    .bind(&credits)
    .bind(&counts)
    .bind(event.global_position)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO merchant_account_balances AS b
            (merchant_id, account, currency, debit_total, credit_total, lines,
             last_global_position)
         SELECT $7, t.account, t.currency, t.debit, t.credit, t.lines, $6
           FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::bigint[])
                AS t(account, currency, debit, credit, lines)
         ON CONFLICT (merchant_id, account, currency) DO UPDATE
            SET debit_total = b.debit_total + EXCLUDED.debit_total,
                credit_total = b.credit_total + EXCLUDED.credit_total,
                lines = b.lines + EXCLUDED.lines,
                last_global_position = GREATEST(b.last_global_position,
                                                EXCLUDED.last_global_position)",
    )
    .bind(&accounts)
    .bind(&currencies)
    .bind(&debits)
    .bind(&credits)
    .bind(&counts)
    .bind(event.global_position)
    .bind(&step.context.merchant_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A row of `account_balances` (or, under a merchant scope, of `merchant_account_balances`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountBalance {
    pub account: String,
    pub currency: String,
    pub debit_total: Decimal,
    pub credit_total: Decimal,
    /// `debit_total - credit_total`: negative for a credit balance (what is owed).
    pub balance: Decimal,
    /// Journal lines posted to the account in this currency.
    pub lines: i64,
    pub last_global_position: i64,
}

/// Balances per account and currency, ordered by account then currency, at most `limit`
/// (clamped to `0..=READ_LIMIT_MAX`). `merchant`: only what that merchant's payments posted
/// (its own payable, and its share of provider, customer and platform accounts); `None`:
/// every merchant. `account` and `currency` filter by exact match.
#[tracing::instrument(skip(pool))]
pub async fn balances(
    pool: &PgPool,
    merchant: Option<&str>,
    account: Option<&str>,
    currency: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountBalance>, sqlx::Error> {
    let columns = "account, currency, debit_total, credit_total, balance, lines,
                   last_global_position";
    let filters = "($1::text IS NULL OR account = $1) AND ($2::text IS NULL OR currency = $2)";
    let sql = match merchant {
        Some(_) => format!(
            "SELECT {columns} FROM merchant_account_balances
              WHERE merchant_id = $4 AND {filters}
              ORDER BY account, currency LIMIT $3"
        ),
        None => format!(
            "SELECT {columns} FROM account_balances
              WHERE {filters}
              ORDER BY account, currency LIMIT $3"
        ),
    };
    let mut query = sqlx::query(&sql)
        .bind(account)
        .bind(currency)
        .bind(limit.clamp(0, READ_LIMIT_MAX));
    if let Some(merchant) = merchant {
        query = query.bind(merchant);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AccountBalance {
                account: row.try_get("account")?,
                currency: row.try_get("currency")?,
                debit_total: row.try_get("debit_total")?,
                credit_total: row.try_get("credit_total")?,
                balance: row.try_get("balance")?,
                lines: row.try_get("lines")?,
                last_global_position: row.try_get("last_global_position")?,
            })
        })
        .collect()
}

/// A row of `journal_entries`: one line of the entry the event at `global_position` posted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalLine {
    pub global_position: i64,
    pub line: i32,
    pub payment_id: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub posting: String,
    pub merchant_id: String,
    pub account: String,
    pub currency: String,
    pub debit: Decimal,
    pub credit: Decimal,
    pub at: DateTime<Utc>,
}

/// Where a page of entries ends: the next page starts strictly after it. Its text form,
/// `<global_position>.<line>`, is what an API can hand out as an opaque cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryCursor {
    pub global_position: i64,
    pub line: i32,
}

impl From<&JournalLine> for EntryCursor {
    fn from(line: &JournalLine) -> Self {
        EntryCursor {
            global_position: line.global_position,
            line: line.line,
        }
    }
}

impl fmt::Display for EntryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.global_position, self.line)
    }
}

impl FromStr for EntryCursor {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const NOT_A_CURSOR: &str = "not a ledger cursor";
        let (position, line) = text.split_once('.').ok_or(NOT_A_CURSOR)?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(position) || !digits(line) {
            return Err(NOT_A_CURSOR);
        }
        Ok(EntryCursor {
            global_position: position.parse().map_err(|_| NOT_A_CURSOR)?,
            line: line.parse().map_err(|_| NOT_A_CURSOR)?,
        })
    }
}

/// The journal of `account`, oldest first (by `(global_position, line)`), starting strictly
/// after `after`, at most `limit` lines (clamped to `0..=READ_LIMIT_MAX`). `merchant`: only
/// lines of that merchant's payments.
#[tracing::instrument(skip(pool))]
pub async fn entries(
    pool: &PgPool,
    merchant: Option<&str>,
    account: &str,
    after: Option<EntryCursor>,
    limit: i64,
) -> Result<Vec<JournalLine>, sqlx::Error> {
    let columns = "global_position, line, payment_id, sequence, event_type, posting,
                   merchant_id, account, currency, debit, credit, at";
    // Positions start at 1 and lines at 1, so (0, 0) is before everything.
    let after = after.unwrap_or(EntryCursor {
        global_position: 0,
        line: 0,
    });
    let sql = match merchant {
        Some(_) => format!(
            "SELECT {columns} FROM journal_entries
              WHERE merchant_id = $5 AND account = $1 AND (global_position, line) > ($2, $3)
              ORDER BY global_position, line LIMIT $4"
        ),
        None => format!(
            "SELECT {columns} FROM journal_entries
              WHERE account = $1 AND (global_position, line) > ($2, $3)
              ORDER BY global_position, line LIMIT $4"
        ),
    };
    let mut query = sqlx::query(&sql)
        .bind(account)
        .bind(after.global_position)
        .bind(after.line)
        .bind(limit.clamp(0, READ_LIMIT_MAX));
    if let Some(merchant) = merchant {
        query = query.bind(merchant);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(JournalLine {
                global_position: row.try_get("global_position")?,
                line: row.try_get("line")?,
                payment_id: row.try_get("payment_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                posting: row.try_get("posting")?,
                merchant_id: row.try_get("merchant_id")?,
                account: row.try_get("account")?,
                currency: row.try_get("currency")?,
                debit: row.try_get("debit")?,
                credit: row.try_get("credit")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{CaptureId, CaptureMode, MerchantId, PaymentId, PaymentMethodType, Reference};

    fn at() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn money(amount: &str, currency: Currency) -> Money {
        Money::parse(amount, currency).unwrap()
    }

    fn initiated(amount: Money, capture_mode: CaptureMode) -> PaymentEvent {
        PaymentEvent::PaymentInitiated {
            payment_id: PaymentId::from_uuid(Uuid::nil()),
            merchant_id: MerchantId::parse("m-1").unwrap(),
            reference: Reference::parse("r-1").unwrap(),
            amount,
            payment_method: PaymentMethodType::Card,
            capture_mode,
            provider: "wompi".into(),
            request_fingerprint: "f".into(),
            at: at(),
        }
    }

    fn approved(capture: Option<CaptureId>, amount: Money, fee: Option<Money>) -> PaymentEvent {
        PaymentEvent::PaymentApproved {
            provider: "payu".into(),
            provider_event_id: None,
            provider_transaction_id: "t".into(),
            capture_id: capture,
            amount,
            fee,
            at: at(),
        }
    }

    /// Runs events through `step`, returning every line and the final context.
    fn run(events: &[PaymentEvent]) -> Result<(Vec<Vec<Line>>, PaymentContext), String> {
        let mut context: Option<PaymentContext> = None;
        let mut entries = Vec::new();
        for event in events {
            let step = step(context.as_ref(), event)?;
            check_balanced(&step.lines)?;
            entries.push(step.lines);
            context = Some(step.context);
        }
        Ok((entries, context.unwrap()))
    }

    fn summary(lines: &[Line]) -> Vec<(String, String, String)> {
        lines
            .iter()
            .map(|l| (l.account.clone(), l.debit.to_string(), l.credit.to_string()))
            .collect()
    }

    fn s(account: &str, debit: &str, credit: &str) -> (String, String, String) {
        (account.into(), debit.into(), credit.into())
    }

    #[test]
    fn manual_capture_releases_the_whole_hold_and_posts_capture_fee_and_refund() {
        let usd = |a| money(a, Currency::USD);
        let (entries, context) = run(&[
            initiated(usd("100.00"), CaptureMode::Manual),
            PaymentEvent::ProviderTransactionCreated {
                provider: "payu".into(),
                provider_transaction_id: "t".into(),
                next_action: None,
                at: at(),
            },
            PaymentEvent::PaymentAuthorized {
                provider: "payu".into(),
                provider_event_id: "e".into(),
                provider_transaction_id: "t".into(),
                amount: usd("100.00"),
                at: at(),
            },
            approved(
                Some(CaptureId::from_uuid(Uuid::nil())),
                usd("60.00"),
                Some(usd("2.04")),
            ),
            PaymentEvent::RefundRequested {
                refund_id: domain::RefundId::from_uuid(Uuid::nil()),
                amount: usd("25.00"),
                reason: None,
                at: at(),
            },
            PaymentEvent::PaymentRefunded {
                refund_id: domain::RefundId::from_uuid(Uuid::nil()),
                provider_refund_id: "r".into(),
                amount: usd("25.00"),
                at: at(),
            },
        ])
        .unwrap();
        assert!(entries[0].is_empty() && entries[1].is_empty() && entries[4].is_empty());
        assert_eq!(
            summary(&entries[2]),
            [
                s("customer:funds_in_flight", "100.00", "0.00"),
                s("provider:payu:authorizations", "0.00", "100.00"),
            ]
        );
        assert_eq!(
            summary(&entries[3]),
            [
                s("provider:payu:authorizations", "100.00", "0.00"),
                s("customer:funds_in_flight", "0.00", "100.00"),
                s("provider:payu:clearing", "60.00", "0.00"),
                s("merchant:m-1:payable", "0.00", "60.00"),
                s("merchant:m-1:payable", "2.04", "0.00"),
                s("platform:fees", "0.00", "2.04"),
            ]
        );
        assert_eq!(
            summary(&entries[5]),
            [
                s("merchant:m-1:payable", "25.00", "0.00"),
                s("provider:payu:clearing", "0.00", "25.00"),
            ]
        );
        assert_eq!(context.hold_provider, None);
        assert_eq!(context.hold_amount.to_string(), "0.00");
        assert_eq!(
            (
                context.captured_amount.to_string(),
                context.fee_amount.to_string(),
                context.refunded_amount.to_string()
            ),
            ("60.00".into(), "2.04".into(), "25.00".into())
        );
    }

    #[test]
    fn automatic_capture_with_a_zero_fee_posts_only_the_capture() {
        let cop = |a| money(a, Currency::COP);
        let (entries, _) = run(&[
            initiated(cop("5000.00"), CaptureMode::Automatic),
            approved(None, cop("5000.00"), Some(Money::zero(Currency::COP))),
        ])
        .unwrap();
        assert_eq!(
            summary(&entries[1]),
            [
                s("provider:payu:clearing", "5000.00", "0.00"),
                s("merchant:m-1:payable", "0.00", "5000.00"),
            ]
        );
        assert!(entries[1].iter().all(|l| l.currency == "COP"));
    }

    #[test]
    fn void_releases_the_hold_from_the_provider_that_placed_it() {
        let php = |a| money(a, Currency::PHP);
        let (entries, context) = run(&[
            initiated(php("80.00"), CaptureMode::Manual),
            PaymentEvent::PaymentAuthorized {
                provider: "maya".into(),
                provider_event_id: "e".into(),
                provider_transaction_id: "t".into(),
                amount: php("80.00"),
                at: at(),
            },
            PaymentEvent::PaymentVoided {
                amount: php("80.00"),
                at: at(),
            },
        ])
        .unwrap();
        assert_eq!(
            summary(&entries[2]),
            [
                s("provider:maya:authorizations", "80.00", "0.00"),
                s("customer:funds_in_flight", "0.00", "80.00"),
            ]
        );
        assert_eq!(context.hold_provider, None);
    }

    #[test]
    fn impossible_sequences_are_refused_rather_than_posted() {
        let usd = |a| money(a, Currency::USD);
        // A capture without a hold, a void without a hold, a refund before any capture.
        let base = initiated(usd("10.00"), CaptureMode::Manual);
        assert!(run(&[
            base.clone(),
            approved(Some(CaptureId::from_uuid(Uuid::nil())), usd("5.00"), None)
        ])
        .is_err());
        assert!(run(&[
            base.clone(),
            PaymentEvent::PaymentVoided {
                amount: usd("10.00"),
                at: at()
            }
        ])
        .is_err());
        assert!(run(&[
            base.clone(),
            PaymentEvent::PaymentRefunded {
                refund_id: domain::RefundId::from_uuid(Uuid::nil()),
                provider_refund_id: "r".into(),
                amount: usd("1.00"),
                at: at(),
            }
        ])
        .is_err());
        // Money in another currency than the payment's.
        assert!(run(&[
            base.clone(),
            approved(None, money("10.00", Currency::EUR), None)
        ])
        .is_err());
        // Anything before PaymentInitiated, or PaymentInitiated twice.
        assert!(step(None, &approved(None, usd("1.00"), None)).is_err());
        assert!(run(&[base.clone(), base]).is_err());
    }

    #[test]
    fn an_unbalanced_or_one_sided_entry_is_caught() {
        let line = |account: &str, currency: &str, debit: i64, credit: i64| Line {
            posting: "capture",
            account: account.into(),
            currency: currency.into(),
            debit: Decimal::from(debit),
            credit: Decimal::from(credit),
        };
        assert!(check_balanced(&[line("a", "USD", 5, 0), line("b", "USD", 0, 5)]).is_ok());
        assert!(check_balanced(&[]).is_ok());
        // Balanced in total but not per currency.
        assert!(check_balanced(&[line("a", "USD", 5, 0), line("b", "COP", 0, 5)]).is_err());
        assert!(check_balanced(&[line("a", "USD", 5, 0), line("b", "USD", 0, 4)]).is_err());
        assert!(check_balanced(&[line("a", "USD", 5, 5), line("b", "USD", 0, 0)]).is_err());
        assert!(check_balanced(&[line("a", "USD", -5, 0), line("b", "USD", -5, 0)]).is_err());
    }

    #[test]
    fn cursor_text_round_trips_and_refuses_junk() {
        let cursor = EntryCursor {
            global_position: 4711,
            line: 3,
        };
        assert_eq!(cursor.to_string(), "4711.3");
        assert_eq!("4711.3".parse::<EntryCursor>(), Ok(cursor));
        for junk in ["", "1", "1.", ".1", "-1.2", "1.2.3", "a.b", "1.99999999999"] {
            assert!(junk.parse::<EntryCursor>().is_err(), "{junk}");
        }
    }
}
