//! Raw card numbers (PANs) never enter payledger: a card reaches it only as a provider's token.
//! A request that carries one anyway is refused before anything reads it further, so a PAN is
//! never logged, stored or sent on.

/// Fewest and most digits of a card number (ISO/IEC 7812).
const DIGITS_MIN: usize = 13;
const DIGITS_MAX: usize = 19;

/// Whether `text` holds a Luhn-valid run of 13 to 19 digits, the digits possibly grouped by
/// single spaces or dashes (`4242 4242 4242 4242`). A run that touches a letter, directly or
/// through a dash, is part of a longer token (a uuid's hex, an id) and is not a card number.
pub fn contains_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    // Each byte is visited a bounded number of times: every run ends where the next begins.
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits: Vec<u8> = Vec::with_capacity(DIGITS_MAX + 1);
        let mut end = i;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_digit() {
                if digits.len() <= DIGITS_MAX {
                    digits.push(b - b'0');
                } else {
                    digits.push(0); // too long already: only the count matters now
                    digits.truncate(DIGITS_MAX + 1);
                }
                end = i;
                i += 1;
            } else if (b == b' ' || b == b'-')
                && bytes.get(i + 1).is_some_and(|next| next.is_ascii_digit())
            {
                i += 1;
            } else {
                break;
            }
        }
        let before = [start.checked_sub(1), start.checked_sub(2)].map(|p| p.map(|p| bytes[p]));
        let after = [end + 1, end + 2].map(|p| bytes.get(p).copied());
        if !part_of_a_token(before)
            && !part_of_a_token(after)
            && (DIGITS_MIN..=DIGITS_MAX).contains(&digits.len())
            && luhn(&digits)
        {
            return true;
        }
        i = end + 1;
    }
    false
}

/// Whether a run of digits, beside these two bytes (nearest first), is part of a longer token:
/// it touches a letter, or a dash joins it to one (a uuid's last groups after a hex group).
fn part_of_a_token([nearest, beyond]: [Option<u8>; 2]) -> bool {
    match nearest {
        Some(b) if b.is_ascii_alphabetic() => true,
        Some(b'-') => beyond.is_some_and(|b| b.is_ascii_alphanumeric()),
        _ => false,
    }
}

/// The Luhn (mod 10) check over `digits`, most significant first.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &d)| {
            let d = u32::from(d);
            if !position.is_multiple_of(2) {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_card_numbers_of_every_length_are_found_however_they_are_written() {
        for pan in [
            "4242424242424242",    // Visa, 16
            "4222222222222",       // Visa, 13
            "378282246310005",     // Amex, 15
            "5555555555554444",    // Mastercard
            "6011111111111117",    // Discover
            "3530111333300000",    // JCB
            "6250941006528599",    // UnionPay, 16
            "6200000000000000000", // 19
        ] {
            assert!(contains_card_number(pan), "{pan}");
            assert!(
                contains_card_number(&format!("card {pan}, please")),
                "{pan}"
            );
        }
        assert!(contains_card_number("4242 4242 4242 4242"));
        assert!(contains_card_number("4242-4242-4242-4242"));
        assert!(contains_card_number("pan=4242424242424242"));
        assert!(contains_card_number("\"4242424242424242\""));
    }

    #[test]
    fn what_is_not_a_card_number_is_left_alone() {
        for text in [
            "4242424242424241",     // fails Luhn
            "424242424242",         // 12 digits
            "42424242424242424242", // 20 digits
            "tok_sandbox_approved",
            "3001234567",
            "129000.00",
            "2026-12-07T12:00:00Z",
            "x4242424242424242", // part of a longer token
            "4242424242424242y",
            "4242  4242 4242 4242", // a double space ends the run
            "",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn a_uuid_is_never_taken_for_a_card_number() {
        // Its all-digit groups run to 24 digits at least, and a group beside hex touches a
        // letter.
        assert!(!contains_card_number(
            "12345678-1234-1234-1234-424242424242"
        ));
        assert!(!contains_card_number(
            "0191f7a0-1234-7000-8000-424242424242"
        ));
        // Its last two groups are a Luhn-valid 16 digits, joined by a dash to a hex group.
        assert!(!contains_card_number(
            "a8175873-3eaf-858b-1459-586123760169"
        ));
        assert!(!contains_card_number("0191f7a0-12a4-4242-4242-42424242"));
    }

    proptest! {
        #[test]
        fn any_uuid_passes(id in any::<u128>()) {
            let text = uuid::Uuid::from_u128(id).to_string();
            prop_assert!(!contains_card_number(&text), "{}", text);
        }

        #[test]
        fn a_uuid_whose_last_groups_are_all_digits_passes(
            id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9]{4}-[0-9]{12}"
        ) {
            // The rare uuid whose last 16 digits may be Luhn-valid, made common.
            prop_assert!(!contains_card_number(&id), "{}", id);
        }

        #[test]
        fn a_valid_number_is_found_inside_any_text_that_does_not_touch_it(
            prefix in "[ ,:\"]{0,3}", body in proptest::collection::vec(0u8..10, 12..=18)
        ) {
            // Complete `body` with the check digit that makes it Luhn-valid.
            let check = (0..10).find(|c| {
                let mut all = body.clone();
                all.push(*c);
                luhn(&all)
            }).unwrap();
            let digits: String = body.iter().chain([&check]).map(|d| char::from(b'0' + d)).collect();
            let text = format!("{prefix}{digits} ");
            prop_assert!(contains_card_number(&text), "{}", text);
        }
    }
}
