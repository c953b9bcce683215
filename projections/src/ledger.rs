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
//! - `orphans:clearing`: money providers took for transactions no payment uses, owed back
//!   to customers; zero once every orphan is compensated.
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
//! | `ProviderTransactionOrphaned` to refund (X captured at provider q) | orphan capture: Dr `provider:<q>:clearing` X / Cr `orphans:clearing` X |
//! | `ProviderTransactionOrphaned` to void (X held at q) | orphan hold: Dr `customer:funds_in_flight` X / Cr `provider:<q>:authorizations` X |
//! | `OrphanCompensated` | the reverse of its orphan's lines (`orphan_refund`, `orphan_release`) |
//! | anything else | nothing (`RefundRequested` and the other intents are not money) |
//!
//! So the credit balance of `merchant:<m>:payable` is captured - refunded - fees, and the
//! authorization accounts return to zero once every hold is captured or voided.
//!
//! The provider of a hold release is the one whose account holds the hold, and the provider
//! of a refund the one whose clearing account received the capture; both are remembered per
//! payment in `ledger_payments` (with merchant, currency, the current provider and running
//! amounts), so the projection reads nothing but its own tables.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Currency, Money, PaymentEvent};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::copy_in::BinaryRows;
use crate::{Decoded, Position, Projection, ProjectionError};

pub const NAME: &str = "ledger";

/// Customer funds held by open authorizations.
pub const CUSTOMER_FUNDS_IN_FLIGHT: &str = "customer:funds_in_flight";
/// Fees taken at approval.
pub const PLATFORM_FEES: &str = "platform:fees";
/// Money providers took for orphaned transactions, owed back to customers until refunded.
pub const ORPHANS_CLEARING: &str = "orphans:clearing";

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

    /// Steps every event in memory from the payments' contexts (read once), checks each
    /// entry balances, then writes: the contexts once, every journal line in one statement,
    /// and each balance row once with the batch's totals.
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &[Decoded<'_>],
    ) -> Result<(), ProjectionError> {
        let ids = crate::payment_ids(decoded);
        let mut contexts = load(conn, &ids).await?;
        let mut dirty: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut journal = Journal::new();
        for (id, event, payload) in decoded {
            if !concerns_ledger(payload) {
                continue;
            }
            let initiated = matches!(payload, PaymentEvent::PaymentInitiated { .. });
            let context = match contexts.get(id) {
                Some(_) if initiated => {
                    return Err(crate::poison(event, "the payment was initiated already"));
                }
                Some(context) => Some(context),
                None if initiated => None,
                None => return Err(crate::poison(event, crate::UNKNOWN_PAYMENT)),
            };
            let step = step(context, payload).map_err(|reason| crate::poison(event, &reason))?;
            check_balanced(&step.lines)
                .map_err(|e| crate::poison(event, &format!("unbalanced entry: {e}")))?;
            journal.post(*id, event, payload, &step)?;
            dirty.insert(*id, event.global_position);
            contexts.insert(*id, step.context);
        }
        save(
            conn,
            dirty.iter().filter_map(|(id, position)| {
                contexts.get(id).map(|context| (*id, context, *position))
            }),
        )
        .await?;
        journal.write(conn).await?;
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
        | PaymentEvent::PaymentRefunded { .. }
        | PaymentEvent::ProviderTransactionOrphaned { .. }
        | PaymentEvent::OrphanCompensated { .. } => true,
        // No money moves: an intent, its refusal, a failed attempt, a failure or expiry of a pending payment (nothing
        // was held), a refund reservation and its release.
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::PaymentFailed { .. }
        | PaymentEvent::PaymentExpired { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::RefundFailed { .. }
        | PaymentEvent::ProviderAttemptStarted { .. }
        | PaymentEvent::ProviderOutcomeUnknown { .. }
        | PaymentEvent::CaptureRequested { .. }
        | PaymentEvent::CaptureFailed { .. }
        | PaymentEvent::VoidRequested { .. }
        | PaymentEvent::VoidFailed { .. }
        | PaymentEvent::PaymentNeedsReview { .. } => false,
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
        PaymentEvent::ProviderTransactionOrphaned {
            provider,
            amount,
            compensation,
            ..
        } => {
            same_currency(amount)?;
            orphan_lines(&mut lines, provider, *compensation, *amount, false);
        }
        PaymentEvent::OrphanCompensated {
            provider,
            amount,
            compensation,
            ..
        } => {
            same_currency(amount)?;
            orphan_lines(&mut lines, provider, Some(*compensation), *amount, true);
        }
        PaymentEvent::ProviderAttemptFailed { .. }
        | PaymentEvent::PaymentFailed { .. }
        | PaymentEvent::PaymentExpired { .. }
        | PaymentEvent::RefundRequested { .. }
        | PaymentEvent::RefundFailed { .. }
        | PaymentEvent::ProviderAttemptStarted { .. }
        | PaymentEvent::ProviderOutcomeUnknown { .. }
        | PaymentEvent::CaptureRequested { .. }
        | PaymentEvent::CaptureFailed { .. }
        | PaymentEvent::VoidRequested { .. }
        | PaymentEvent::VoidFailed { .. }
        | PaymentEvent::PaymentNeedsReview { .. } => {}
    }
    Ok(Step {
        lines,
        context: next,
    })
}

/// Money a provider took or held for an orphaned transaction (`returned: false`), or gave
/// back (`returned: true`). A capture sits in `orphans:clearing` (owed back to the customer)
/// against the provider's clearing; a hold is an authorization like any other. Both return
/// to zero once every orphan is compensated.
fn orphan_lines(
    lines: &mut Vec<Line>,
    provider: &str,
    compensation: Option<domain::payment::Compensation>,
    amount: Money,
    returned: bool,
) {
    use domain::payment::Compensation;
    let (posting, debit, credit) = match (compensation, returned) {
        (None, _) => return,
        (Some(Compensation::Refund), false) => (
            "orphan_capture",
            provider_clearing(provider),
            ORPHANS_CLEARING.to_owned(),
        ),
        (Some(Compensation::Refund), true) => (
            "orphan_refund",
            ORPHANS_CLEARING.to_owned(),
            provider_clearing(provider),
        ),
        (Some(Compensation::Void), false) => (
            "orphan_hold",
            CUSTOMER_FUNDS_IN_FLIGHT.to_owned(),
            provider_authorizations(provider),
        ),
        (Some(Compensation::Void), true) => (
            "orphan_release",
            provider_authorizations(provider),
            CUSTOMER_FUNDS_IN_FLIGHT.to_owned(),
        ),
    };
    transfer(lines, posting, debit, credit, amount);
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

async fn load(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, PaymentContext>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.* FROM UNNEST($1::uuid[]) AS k(id) CROSS JOIN LATERAL (
             SELECT payment_id, merchant_id, currency, provider, hold_provider, hold_amount,
                    capture_provider, captured_amount, fee_amount, refunded_amount
               FROM ledger_payments WHERE payment_id = k.id LIMIT 1) AS t",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut contexts = HashMap::with_capacity(rows.len());
    for row in &rows {
        contexts.insert(
            row.try_get("payment_id")?,
            PaymentContext {
                merchant_id: row.try_get("merchant_id")?,
                currency: row.try_get("currency")?,
                provider: row.try_get("provider")?,
                hold_provider: row.try_get("hold_provider")?,
                hold_amount: row.try_get("hold_amount")?,
                capture_provider: row.try_get("capture_provider")?,
                captured_amount: row.try_get("captured_amount")?,
                fee_amount: row.try_get("fee_amount")?,
                refunded_amount: row.try_get("refunded_amount")?,
            },
        );
    }
    Ok(contexts)
}

/// Writes the contexts (each with the position of the last event that changed it).
async fn save<'a>(
    conn: &mut PgConnection,
    contexts: impl Iterator<Item = (Uuid, &'a PaymentContext, i64)>,
) -> Result<(), sqlx::Error> {
    let contexts: Vec<(Uuid, &PaymentContext, i64)> = contexts.collect();
    if contexts.is_empty() {
        return Ok(());
    }
    let text =
        |f: fn(&PaymentContext) -> &str| contexts.iter().map(|(_, c, _)| f(c)).collect::<Vec<_>>();
    let optional = |f: fn(&PaymentContext) -> Option<&str>| {
        contexts.iter().map(|(_, c, _)| f(c)).collect::<Vec<_>>()
    };
    let amount = |f: fn(&PaymentContext) -> Decimal| {
        contexts.iter().map(|(_, c, _)| f(c)).collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO ledger_payments AS p
            (payment_id, merchant_id, currency, provider, hold_provider, hold_amount,
             capture_provider, captured_amount, fee_amount, refunded_amount, last_global_position)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::numeric[], $7::text[], $8::numeric[], $9::numeric[],
                              $10::numeric[], $11::bigint[])
         ON CONFLICT (payment_id) DO UPDATE SET
             merchant_id = EXCLUDED.merchant_id, currency = EXCLUDED.currency,
             provider = EXCLUDED.provider, hold_provider = EXCLUDED.hold_provider,
             hold_amount = EXCLUDED.hold_amount, capture_provider = EXCLUDED.capture_provider,
             captured_amount = EXCLUDED.captured_amount, fee_amount = EXCLUDED.fee_amount,
             refunded_amount = EXCLUDED.refunded_amount,
             last_global_position = EXCLUDED.last_global_position",
    )
    .bind(contexts.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
    .bind(text(|c| &c.merchant_id))
    .bind(text(|c| &c.currency))
    .bind(text(|c| &c.provider))
    .bind(optional(|c| c.hold_provider.as_deref()))
    .bind(amount(|c| c.hold_amount))
    .bind(optional(|c| c.capture_provider.as_deref()))
    .bind(amount(|c| c.captured_amount))
    .bind(amount(|c| c.fee_amount))
    .bind(amount(|c| c.refunded_amount))
    .bind(contexts.iter().map(|(_, _, p)| *p).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A balance row's additions from a batch: debits, credits, lines, newest position.
#[derive(Debug, Default)]
struct Totals {
    debit: Decimal,
    credit: Decimal,
    lines: i64,
    last_global_position: i64,
}

/// A batch's journal lines (encoded as they are posted, ready for `COPY`) and what they add
/// to the balances, written with three statements whatever the batch size.
struct Journal {
    lines: BinaryRows,
    /// By (account, currency): a fixed order, so an upsert touches a row once and
    /// concurrent consumers lock shared rows in the same order.
    balances: BTreeMap<(String, String), Totals>,
    merchant_balances: BTreeMap<(String, String, String), Totals>,
}

/// `journal_entries`' columns, in the order `Journal::post` encodes them.
const JOURNAL_COPY: &str = "COPY journal_entries
        (global_position, line, payment_id, sequence, event_type, posting, merchant_id, account,
         currency, debit, credit, at)
     FROM STDIN (FORMAT binary)";
const JOURNAL_COLUMNS: i16 = 12;

impl Journal {
    fn new() -> Self {
        Self {
            lines: BinaryRows::new(JOURNAL_COLUMNS),
            balances: BTreeMap::new(),
            merchant_balances: BTreeMap::new(),
        }
    }

    fn post(
        &mut self,
        id: Uuid,
        event: &Position<'_>,
        payload: &PaymentEvent,
        step: &Step,
    ) -> Result<(), sqlx::Error> {
        let merchant = &step.context.merchant_id;
        for (number, line) in (1_i32..).zip(&step.lines) {
            let row = &mut self.lines;
            row.row();
            row.field(&event.global_position)?;
            row.field(&number)?;
            row.field(&id)?;
            row.field(&event.sequence)?;
            row.field(&payload.name())?;
            row.field(&line.posting)?;
            row.field(merchant)?;
            row.field(&line.account)?;
            row.field(&line.currency)?;
            row.field(&line.debit)?;
            row.field(&line.credit)?;
            row.field(&payload.at())?;
            let add = |totals: &mut Totals| {
                totals.debit += line.debit;
                totals.credit += line.credit;
                totals.lines += 1;
                totals.last_global_position =
                    totals.last_global_position.max(event.global_position);
            };
            add(self
                .balances
                .entry((line.account.clone(), line.currency.clone()))
                .or_default());
            add(self
                .merchant_balances
                .entry((
                    merchant.clone(),
                    line.account.clone(),
                    line.currency.clone(),
                ))
                .or_default());
        }
        Ok(())
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let Journal {
            lines,
            balances,
            merchant_balances,
        } = self;
        if lines.is_empty() {
            return Ok(());
        }
        lines.copy(conn, JOURNAL_COPY).await?;
        let totals = |map: &mut dyn Iterator<Item = &Totals>| {
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for t in map {
                columns.0.push(t.debit);
                columns.1.push(t.credit);
                columns.2.push(t.lines);
                columns.3.push(t.last_global_position);
            }
            columns
        };
        let (debits, credits, lines, positions) = totals(&mut balances.values());
        sqlx::query(
            "INSERT INTO account_balances AS b
                (account, currency, debit_total, credit_total, lines, last_global_position)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[],
                                  $5::bigint[], $6::bigint[])
             ON CONFLICT (account, currency) DO UPDATE
                SET debit_total = b.debit_total + EXCLUDED.debit_total,
                    credit_total = b.credit_total + EXCLUDED.credit_total,
                    lines = b.lines + EXCLUDED.lines,
                    last_global_position = GREATEST(b.last_global_position,
                                                    EXCLUDED.last_global_position)",
        )
        .bind(balances.keys().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind(balances.keys().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .bind(&debits)
        .bind(&credits)
        .bind(&lines)
        .bind(&positions)
        .execute(&mut *conn)
        .await?;
        let (debits, credits, lines, positions) = totals(&mut merchant_balances.values());
        sqlx::query(
            "INSERT INTO merchant_account_balances AS b
                (merchant_id, account, currency, debit_total, credit_total, lines,
                 last_global_position)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[],
                                  $5::numeric[], $6::bigint[], $7::bigint[])
             ON CONFLICT (merchant_id, account, currency) DO UPDATE
                SET debit_total = b.debit_total + EXCLUDED.debit_total,
                    credit_total = b.credit_total + EXCLUDED.credit_total,
                    lines = b.lines + EXCLUDED.lines,
                    last_global_position = GREATEST(b.last_global_position,
                                                    EXCLUDED.last_global_position)",
        )
        .bind(
            merchant_balances
                .keys()
                .map(|k| k.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            merchant_balances
                .keys()
                .map(|k| k.1.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            merchant_balances
                .keys()
                .map(|k| k.2.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&debits)
        .bind(&credits)
        .bind(&lines)
        .bind(&positions)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
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
