//! `ledger_balanced`: the double-entry journal balances (docs/projections.md, "The ledger
//! balances"), and the running balances are the sums of its lines.

use sqlx::PgPool;

use super::{scan, Examples, Finding, Status};

/// What docs/projections.md calls balanced, and that the totals agree with the journal.
pub(super) async fn ledger_balanced(pool: &PgPool, examples_max: usize) -> Result<Finding, String> {
    let mut examples = Examples::new(examples_max);
    let mut finding = Finding::new(Status::Pass, String::new());
    let mut broken = Vec::new();
    // (name, what a row means, query returning one text per offending row)
    let rules: [(&str, &str, &str); 5] = [
        (
            "unbalanced_entries",
            "journal entries whose lines do not sum to zero in a currency",
            "SELECT json_build_object('global_position', global_position, 'currency', currency,
                    'debit', sum(debit)::text, 'credit', sum(credit)::text)::text
               FROM journal_entries GROUP BY global_position, currency
              HAVING sum(debit) <> sum(credit)",
        ),
        (
            "unbalanced_currencies",
            "currencies whose journal debits and credits differ",
            "SELECT json_build_object('currency', currency,
                    'debit', sum(debit)::text, 'credit', sum(credit)::text)::text
               FROM journal_entries GROUP BY currency HAVING sum(debit) <> sum(credit)",
        ),
        (
            "balances_off_journal",
            "account balances that are not the sums of their journal lines",
            "SELECT json_build_object('account', account, 'currency', currency,
                    'balance_debit', b.debit_total::text, 'balance_credit', b.credit_total::text,
                    'balance_lines', b.lines, 'journal_debit', j.debit::text,
                    'journal_credit', j.credit::text, 'journal_lines', j.lines)::text
               FROM account_balances b
               FULL JOIN (SELECT account, currency, sum(debit) AS debit, sum(credit) AS credit,
                                 count(*) AS lines
                            FROM journal_entries GROUP BY account, currency) j
                 USING (account, currency)
              WHERE b.debit_total IS DISTINCT FROM j.debit
                 OR b.credit_total IS DISTINCT FROM j.credit
                 OR b.lines IS DISTINCT FROM j.lines",
        ),
        (
            "balances_not_zero",
            "currencies whose account balances do not sum to zero",
            "SELECT json_build_object('currency', currency, 'sum', sum(balance)::text)::text
               FROM account_balances GROUP BY currency HAVING sum(balance) <> 0",
        ),
        (
            "merchant_balances_off",
            "accounts whose per-merchant balances do not add up to the account's",
            "SELECT json_build_object('account', account, 'currency', currency,
                    'debit', b.debit_total::text, 'merchants_debit', m.debit::text,
                    'credit', b.credit_total::text, 'merchants_credit', m.credit::text)::text
               FROM account_balances b
               FULL JOIN (SELECT account, currency, sum(debit_total) AS debit,
                                 sum(credit_total) AS credit, sum(lines) AS lines
                            FROM merchant_account_balances GROUP BY account, currency) m
                 USING (account, currency)
              WHERE b.debit_total IS DISTINCT FROM m.debit
                 OR b.credit_total IS DISTINCT FROM m.credit
                 OR b.lines IS DISTINCT FROM m.lines",
        ),
    ];
    for (name, meaning, sql) in rules {
        // Counted whole, sampled up to the examples kept.
        let count: i64 = scan(
            meaning,
            sqlx::query_scalar(&format!("SELECT count(*) FROM ({sql}) d")).fetch_one(pool),
        )
        .await?;
        finding.count(name, count);
        if count > 0 {
            broken.push(format!("{count} {meaning}"));
            let rows: Vec<String> = scan(
                meaning,
                sqlx::query_scalar(&format!("{sql} LIMIT {examples_max}")).fetch_all(pool),
            )
            .await?;
            for row in rows {
                examples.push(|| format!("{name}: {row}"));
            }
        }
    }
    let (lines, currencies): (i64, i64) = scan(
        "counting journal lines",
        sqlx::query_as("SELECT count(*), count(DISTINCT currency) FROM journal_entries")
            .fetch_one(pool),
    )
    .await?;
    finding.count("journal_lines", lines);
    finding.examples = examples.kept;
    if broken.is_empty() {
        finding.summary = format!(
            "{lines} journal lines in {currencies} currencies: every entry and every currency balances, and the balances are the journal's sums"
        );
    } else {
        finding.status = Status::Fail;
        finding.summary = broken.join("; ");
    }
    Ok(finding)
}
