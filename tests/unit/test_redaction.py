"""PII redaction (gateway/redaction.py and the detectors in gateway/pii_*.py).

Table-driven: each kind's positives in several formats and surroundings, the
look-alikes that must survive with every kind switched on, and the premises
of those tables checked against the validating libraries themselves (a
"valid" phone number is one phonenumbers accepts, a "Luhn-valid number
without an issuer" really passes Luhn), so that a table cannot pass for the
wrong reason. Then rule plumbing, BYTES tensors, non-UTF-8 input, properties
(hypothesis), and the measured cost, printed, never asserted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum import iban, isbn, luhn
from stdnum.us import ssn

from inferplane.compiler import plan
from inferplane.compiler.schema import REDACT_KINDS
from inferplane.gateway import pii_numbers, pii_phone
from inferplane.gateway.redaction import (
    PRIORITY,
    REPLACEMENTS,
    RedactedTensor,
    RedactionInputError,
    RedactionResult,
    Redactor,
    redactors_for,
)

ALL = REDACT_KINDS
GOLDEN = Path(__file__).resolve().parents[1] / "golden"

# -- positives -------------------------------------------------------------------------

POSITIVES = [
    ("email", "john.doe@example.com"),
    ("email", "first.last+tag@sub.example.co.uk"),
    ("email", "O'Brien_1@example-domain.ie"),
    ("email", "josé.müller@bücher.de"),
    ("email", "USER@EXAMPLE.COM"),
    ("email", "x@xn--80ak6aa92e.com"),
    ("phone", "+1 415 555 0132"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "(415) 555-2671"),
    ("phone", "415.555.2671"),
    ("phone", "415-555-2671"),
    ("phone", "+1.415.555.2671"),
    ("phone", "+14155552671"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "020 7946 0958"),
    ("phone", "+49 30 901820"),
    ("phone", "+49 (0)30 901820"),
    ("phone", "030 901820"),
    ("phone", "0049 30 901820"),
    ("phone", "+33 1 42 68 53 00"),
    ("phone", "01 42 68 53 00"),
    ("phone", "+33142685300"),
    ("phone", "+81 3-1234-5678"),
    ("credit-card", "4111 1111 1111 1111"),
    ("credit-card", "4111-1111-1111-1111"),
    ("credit-card", "4111111111111111"),
    ("credit-card", "4012888888881881"),
    ("credit-card", "5555-5555-5555-4444"),
    ("credit-card", "5105 1051 0510 5100"),
    ("credit-card", "2223 0031 2200 3222"),
    ("credit-card", "378282246310005"),
    ("credit-card", "3782 822463 10005"),
    ("credit-card", "6011 1111 1111 1117"),
    ("credit-card", "3530 1113 3330 0000"),
    ("credit-card", "3056 9309 0259 04"),
    ("credit-card", "6200 0000 0000 0005"),
    ("credit-card", "6759 6498 2643 8453"),
    ("credit-card", "６０１１ １１１１ １１１１ １１１７"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "de89 3704 0044 0532 0130 00"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "NL91 ABNA 0417 1643 00"),
    ("iban", "CH93 0076 2011 6238 5295 7"),
    ("ssn", "123-45-6789"),
    ("ssn", "123 45 6789"),
    ("ssn", "001-01-0001"),
    ("ip", "192.168.1.1"),
    ("ip", "8.8.8.8"),
    ("ip", "255.255.255.255"),
    ("ip", "192.168.001.010"),
    ("ip", "2001:db8::8a2e:370:7334"),
    ("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip", "fe80::1%eth0"),
    ("ip", "::ffff:192.0.2.1"),
    ("ip", "::1"),
]
CONTEXTS = [
    "{}",
    "see {} now",
    "({}).",
    "Grüße — {}, 谢谢 😀",
    "line one\r\n{}\nline three",
    "«{}»",
]


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(("kind", "value"), POSITIVES)
def test_each_kind_is_replaced_in_any_surroundings(kind: str, value: str, context: str):
    text = context.format(value)
    want = context.format(REPLACEMENTS[kind])
    for redactor in (Redactor([kind]), Redactor(ALL)):
        result = redactor.redact(text)
        assert result.text == want
        assert result.counts == {kind: 1}


def phone_premise(value: str) -> bool:
    for region in pii_phone.DEFAULT_REGIONS:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


@pytest.mark.parametrize(("kind", "value"), POSITIVES)
def test_positives_are_valid_to_the_libraries(kind: str, value: str):
    """The tables use real validity, not numbers that merely look right."""
    digits = "".join(pii_numbers.ascii_digits(c) for c in value if c.isdecimal())
    if kind == "phone":
        assert phone_premise(value)
    elif kind == "credit-card":
        assert luhn.is_valid(digits) and pii_numbers.card_issuer(digits) is not None
    elif kind == "iban":
        assert iban.is_valid(value)
    elif kind == "ssn":
        assert ssn.is_valid(value.replace(" ", "-"))


# -- look-alikes -----------------------------------------------------------------------

LUHN_NO_ISSUER = "1234567890123452"  # passes Luhn; no issuer starts with 1
VISA_WRONG_LENGTH = "411111111111116"  # Luhn-valid, Visa prefix, 15 digits
AMEX_WRONG_LENGTH = "3411111111111110"  # Luhn-valid, Amex prefix, 16 digits
LOOKALIKES = [
    "ISBN 978-3-16-148410-0",
    "ISBN-10 0-306-40615-2",
    "see 0-306-40615-2",  # hyphenated as an ISBN, and a valid French number
    "isbn: 978-0-306-40615-7",
    "9783161484100",
    "EAN 4006381333931",
    "ORD-20240517-0042",
    "order ORD-12345678",
    "order ORD-0301234567",  # a valid German number, glued to an identifier
    "ref TCK-4155552671",
    "INV/4155552671",
    "order #20240517",
    "ORD-1234.0301234567",
    "paid $4155552671",  # an amount, not a number to call
    "grew 4155552671%",
    "2024-05-17",
    "17.05.2024",
    "05/17/2024",
    "2024/05/17",
    "on 2024-05-17 / 17.05.2024",
    "2024-05-17T10:30:00Z",
    "Tuesday 17/05/2024 10:00-12:00",
    "10:30",
    "12:30:45",
    "10:30-11:45",
    "Total: 1,234.56 EUR",
    "EUR 301234.50",
    "$4,111.11",
    "invoice total 12 345,67 €",
    "5 items x 12.50 = 62.50",
    "Q3 2024: 1,234,567 users",
    "4111 1111 1111 1112",  # fails Luhn
    "4111111111111112",
    LUHN_NO_ISSUER,
    "1234 5678 9012 3452",
    VISA_WRONG_LENGTH,
    AMEX_WRONG_LENGTH,
    "4111111111111111111111",  # one 22-digit identifier, not a card
    "x4111111111111111",
    "DE88 3704 0044 0532 0130 00",  # wrong check digits
    "GB82 WEST 1234 5698 7654 33",
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    "123456789",
    "version 1.2.3",
    "v1.2.3.4",
    "1.2.3.4.5",
    "1.2.2024",
    "999.1.1.1",
    "build 20240517.1",
    "00:1A:2B:3C:4D:5E",
    "std::vector and abc::def at 10 am",  # hex-only IPv6 is a path, even with digits about
    "UUID 123e4567-e89b-12d3-a456-426614174000",
    "a@b",
    "user@localhost",
    "x@y.c",
    "name@example.com123",
    "zip 94103, PIN 1234, room 1204",
    "tracking 1Z999AA10123456784",
    "99.9% uptime",
    "The quick brown fox.",
    "",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_left_alone(text: str):
    result = Redactor(ALL).redact(text)
    assert result.text == text
    assert result.counts == {}


def test_lookalike_premises():
    """Each near miss misses for the stated reason only."""
    assert isbn.is_valid("978-3-16-148410-0") and isbn.is_valid("0-306-40615-2")
    assert phonenumbers.is_valid_number(phonenumbers.parse("0-306-40615-2", "FR"))
    assert phonenumbers.is_valid_number(phonenumbers.parse("0301234567", "DE"))
    assert phonenumbers.is_valid_number(phonenumbers.parse("040235", "DE"))
    assert not luhn.is_valid("4111111111111112")
    assert luhn.is_valid(LUHN_NO_ISSUER) and pii_numbers.card_issuer(LUHN_NO_ISSUER) is None
    for number in (VISA_WRONG_LENGTH, AMEX_WRONG_LENGTH):
        assert luhn.is_valid(number) and pii_numbers.card_issuer(number) is None
    assert iban.is_valid("DE89 3704 0044 0532 0130 00")
    assert not iban.is_valid("DE88 3704 0044 0532 0130 00")
    assert not ssn.is_valid("000-12-3456") and ssn.is_valid("123-45-6789")


KIND_LOOKALIKES = [
    ("ssn", "078-05-1120"),  # advertised on a wallet insert; valid shape
    ("ssn", "219-09-9999"),
    ("ssn", "123456789"),  # bare nine digits: too ambiguous
    ("ssn", "123-45-6789-0"),
    ("ssn", "123-45 6789"),  # mixed separators
    ("ssn", "1 123 45 6789"),  # three groups out of a longer spaced run
    ("ssn", "123 45 6789 1"),
    ("phone", "555-0100"),
    ("phone", "code 040235"),  # six digits: a valid Hamburg number, and a short run
    ("phone", "1 800 123"),
    ("phone", "(11) 96123-4567"),  # Brazilian national format; BR is not a default region
    ("phone", "0100000 /000"),  # the matcher reads one French number across " /"
    ("iban", "IBAN DE89 3704 0044 0532 0130"),  # truncated
    ("credit-card", "4111 1111 1111"),
    ("ip", "1.2.3"),
    ("ip", "256.1.1.1"),
]


@pytest.mark.parametrize(("kind", "text"), KIND_LOOKALIKES)
def test_lookalikes_for_one_kind(kind: str, text: str):
    assert Redactor([kind]).redact(text).text == text


def test_a_card_next_to_a_phone_in_one_run_of_digits():
    text = "4111 1111 1111 1111 030 901820"
    assert Redactor(ALL).redact(text).text == "[CREDIT_CARD] [PHONE]"
    assert Redactor(["credit-card"]).redact("card 4111 1111 1111 1111 2nd try").text == (
        "card [CREDIT_CARD] 2nd try"
    )


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("17.05.2024 030 901820", "17.05.2024 [PHONE]"),
        ("030 901820 17.05.2024", "[PHONE] 17.05.2024"),
        ("05/17/2024 415 555 2671", "05/17/2024 [PHONE]"),
        ("2024-05-17 +44 20 7946 0958", "2024-05-17 [PHONE]"),
        ("on 17.05.2024 0301234567", "on 17.05.2024 [PHONE]"),
    ],
)
def test_a_date_next_to_a_phone_number_is_cut_off(text: str, want: str):
    # Without the cut the matcher reads `030 901820 17` or nothing at all.
    assert Redactor(ALL).redact(text).text == want


def test_a_dashed_ssn_before_a_number_word():
    assert Redactor(["ssn"]).redact("SSN 123-45-6789 2nd try").text == "SSN [SSN] 2nd try"


def test_a_phone_extension_stays_in_the_text():
    redactor = Redactor(["phone"])
    assert redactor.redact("+1 415-555-2671 ext. 12").text == "[PHONE] ext. 12"
    assert redactor.redact("call (415) 555-2671 x123 now").text == "call [PHONE] x123 now"


def test_an_iban_after_other_tokens():
    text = "ref AB12 DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX"
    assert Redactor(["iban"]).redact(text).text == "ref AB12 [IBAN] BIC COBADEFFXXX"


# -- regions ---------------------------------------------------------------------------


def test_phone_regions_decide_national_numbers():
    text = "São Paulo office (11) 96123-4567, or +55 11 96123-4567"
    assert Redactor(["phone"]).redact(text).text == "São Paulo office (11) 96123-4567, or [PHONE]"
    brazil = Redactor(["phone"], phone_regions=("BR",))
    assert brazil.redact(text).text == "São Paulo office [PHONE], or [PHONE]"
    assert Redactor(["phone"], phone_regions=("US",)).redact("030 901820").text == "030 901820"


def test_unknown_regions_and_kinds_are_refused():
    with pytest.raises(ValueError, match="XX"):
        Redactor(["phone"], phone_regions=("XX",))
    with pytest.raises(ValueError, match="passport"):
        Redactor(["passport"])


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_prefilter_keeps_every_example_number(region: str):
    """The cheap numbering-plan test never skips a region's own example numbers."""
    numbering = pii_phone._NumberingPlan(region)
    for kind in phonenumbers.PhoneNumberType.values():
        number = phonenumbers.example_number_for_type(region, kind)
        if number is None:
            continue
        text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        run = pii_phone._RUN.search(text)
        if run is None:  # a number written with letters or without digits in a run
            continue
        assert numbering.may_hold_number(pii_phone._stretches(run.group())), text


@pytest.mark.parametrize("region", pii_phone.DEFAULT_REGIONS)
def test_example_numbers_of_default_regions_are_redacted(region: str):
    redactor = Redactor(["phone"])
    for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
        number = phonenumbers.example_number_for_type(region, kind)
        for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.E164):
            text = phonenumbers.format_number(number, fmt)
            assert redactor.redact(f"call {text} today").text == "call [PHONE] today"


# -- rules, patterns, overlaps ---------------------------------------------------------

TICKET = (
    "Hi, order ORD-20240517-0042 from 2024-05-17 never arrived. Please refund card "
    "4111 1111 1111 1111 or IBAN DE89 3704 0044 0532 0130 00; reach me at jane.doe@example.com "
    "or +44 20 7946 0958. Thanks!"
)
TICKET_REDACTED = (
    "Hi, order ORD-20240517-0042 from 2024-05-17 never arrived. Please refund card "
    "[CREDIT_CARD] or IBAN [IBAN]; reach me at [EMAIL] or [PHONE]. Thanks!"
)


def test_several_kinds_in_one_text_and_their_counts():
    result = Redactor(ALL).redact(TICKET + " Also 10.0.0.7, SSN 123-45-6789, jane@example.org.")
    assert result.text == TICKET_REDACTED + " Also [IP], SSN [SSN], [EMAIL]."
    assert result.counts == {
        "credit-card": 1,
        "iban": 1,
        "email": 2,
        "phone": 1,
        "ip": 1,
        "ssn": 1,
    }


@pytest.mark.parametrize("kind", ALL)
def test_only_the_requested_kinds_apply(kind: str):
    samples = {
        "email": "jane.doe@example.com",
        "phone": "+44 20 7946 0958",
        "credit-card": "4111 1111 1111 1111",
        "iban": "DE89 3704 0044 0532 0130 00",
        "ssn": "123-45-6789",
        "ip": "10.0.0.7",
    }
    text = " | ".join(samples.values())
    want = " | ".join(REPLACEMENTS[k] if k == kind else v for k, v in samples.items())
    assert Redactor([kind]).redact(text).text == want
    assert Redactor([]).redact(text).text == text


def test_patterns_are_replaced_by_redacted():
    redactor = Redactor(["email"], ["TCK-[0-9]{7}", "ACCT[0-9]{10}"])
    result = redactor.redact("Ticket TCK-1234567 on ACCT0123456789 from bob@example.com")
    assert result.text == "Ticket [REDACTED] on [REDACTED] from [EMAIL]"
    assert result.counts == {"pattern": 2, "email": 1}


def test_patterns_run_on_text_without_digits():
    result = Redactor(ALL, [r"project-[a-z]+"]).redact("about project-falcon, as agreed")
    assert result.text == "about [REDACTED], as agreed"


def test_empty_pattern_matches_are_ignored():
    assert Redactor([], ["x*"]).redact("abc").text == "abc"


@pytest.mark.parametrize(
    ("patterns", "text", "want"),
    [
        # a pattern shorter than the card loses to it
        ([r"\d{4} \d{4}"], "4111 1111 1111 1111", "[CREDIT_CARD]"),
        # a pattern longer than the email wins
        ([r"mail: \S+"], "mail: bob@example.com", "[REDACTED]"),
        # same span: a card outranks a pattern
        ([r"4111 1111 1111 1111"], "4111 1111 1111 1111", "[CREDIT_CARD]"),
    ],
)
def test_overlaps_longest_first_then_priority(patterns, text, want):
    assert Redactor(ALL, patterns).redact(text).text == want


def test_priority_covers_every_kind():
    assert set(PRIORITY) == {*REDACT_KINDS, "pattern"} == set(REPLACEMENTS)


def test_placeholders_are_never_redacted_again():
    # A site pattern that matches capitals would otherwise eat `[EMAIL]`.
    redactor = Redactor(ALL, [r"[A-Z]{4,}"])
    first = redactor.redact("from bob@example.com URGENT")
    assert first.text == "from [EMAIL] [REDACTED]"
    again = redactor.redact(first.text)
    assert again.text == first.text and again.counts == {}


def test_a_number_glued_to_a_replaced_id_stays_glued():
    redactor = Redactor(ALL, ["TCK-[0-9]{7}"])
    first = redactor.redact("4111 1111 1111 1111TCK-1234567")
    assert first.text == "4111 1111 1111 1111[REDACTED]"
    assert redactor.redact(first.text).text == first.text


def test_result_is_a_fixed_point_for_runs_the_matcher_reads_by_context():
    # The matcher reads "030 901820030 9018204111" from its start; once the
    # US number inside is replaced, the German number before it stands alone.
    redactor = Redactor(ALL)
    first = redactor.redact("030 901820030 9018204111 1111 1111 1111")
    assert redactor.redact(first.text).text == first.text


# -- plan rules ------------------------------------------------------------------------


def test_redactors_for_merges_the_rules_of_each_input():
    privacy = plan.Privacy(
        redactions=[
            plan.Redaction(input="text", kinds=["email"], patterns=["TCK-[0-9]{7}"]),
            plan.Redaction(input="text", kinds=["phone", "email"]),
            plan.Redaction(input="subject", kinds=["ip"]),
        ]
    )
    redactors = redactors_for(privacy)
    assert set(redactors) == {"text", "subject"}
    assert redactors["text"].kinds == ("email", "phone")
    assert redactors["text"].patterns == ("TCK-[0-9]{7}",)
    assert redactors["subject"].redact("from 10.1.2.3").text == "from [IP]"
    assert redactors_for(plan.Privacy()) == {}


def test_redactors_for_the_support_example_plan():
    support = plan.load_plan((GOLDEN / "support.plan.json").read_text())
    (model,) = [m for m in support.models if m.privacy.redactions]
    redactors = redactors_for(model.privacy)
    assert list(redactors) == ["text"]
    text = "TCK-1234567: card 5555-5555-5555-4444, call 020 7946 0958, ip 10.0.0.1"
    assert redactors["text"].redact(text).text == (
        "[REDACTED]: card [CREDIT_CARD], call [PHONE], ip 10.0.0.1"
    )


# -- bytes and tensors -----------------------------------------------------------------


def test_redact_bytes_keeps_utf8_around_matches():
    value = "Grüße 😀 jane@example.com — 谢谢".encode()
    assert Redactor(ALL).redact_bytes(value) == "Grüße 😀 [EMAIL] — 谢谢".encode()


@pytest.mark.parametrize(
    "value",
    [
        b"plain words only",
        b"",
        "caf\u00e9 \u2014 \u00fc\u00df\r\n\x00\t".encode(),
        TICKET_REDACTED.encode(),
    ],
)
def test_text_without_pii_is_returned_byte_for_byte(value: bytes):
    assert Redactor(ALL, ["TCK-[0-9]{7}"]).redact_bytes(value) is value


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        (b"M\xfcller jane@example.com", 1),  # Latin-1
        ("4111 1111 1111 1111".encode("utf-16"), 0),  # UTF-16 hides the digits
        (b"ok \xc0\xaf", 3),  # overlong encoding
        (b"ok \xed\xa0\x80", 3),  # an encoded surrogate
        (b"cut \xe2\x82", 4),  # truncated sequence
    ],
)
def test_non_utf8_bytes_are_refused(value: bytes, offset: int):
    with pytest.raises(RedactionInputError) as caught:
        Redactor(ALL).redact_bytes(value)
    assert caught.value.kind == "INVALID_ARGUMENT"
    assert f"offset {offset}" in str(caught.value) and "UTF-8" in str(caught.value)


def test_non_utf8_element_of_a_tensor_names_the_tensor_and_element():
    batch = np.array([b"fine", b"\xff\xfe"], dtype=object)
    with pytest.raises(RedactionInputError, match=r"input `text` element 1: not UTF-8") as e:
        Redactor(ALL).redact_array(batch, tensor="text")
    assert (e.value.tensor, e.value.index) == ("text", 1)


def test_redact_array_redacts_each_element():
    batch = np.array(
        [[b"mail jane@example.com", b"nothing here"], [b"card 4111111111111111", b"ip ::1"]],
        dtype=object,
    )
    original = batch.copy()
    result = Redactor(ALL).redact_array(batch, tensor="text")
    assert isinstance(result, RedactedTensor)
    assert result.array.shape == (2, 2) and result.array.dtype == object
    assert result.array.tolist() == [
        [b"mail [EMAIL]", b"nothing here"],
        [b"card [CREDIT_CARD]", b"ip [IP]"],
    ]
    assert result.counts == {"email": 1, "credit-card": 1, "ip": 1}
    assert (batch == original).all()  # the input is not modified


def test_redact_array_returns_the_input_when_nothing_changes():
    batch = np.array([b"a", b"b"], dtype=object)
    result = Redactor(ALL).redact_array(batch)
    assert result.array is batch and result.counts == {}


def test_redact_array_takes_fixed_width_bytes():
    batch = np.array([b"ip 10.0.0.1", b"ok"])  # dtype S11
    result = Redactor(["ip"]).redact_array(batch)
    assert result.array.tolist() == [b"ip [IP]", b"ok"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([1.0, 2.0], dtype=np.float32), "not float32"),
        (np.array([b"ok", 3], dtype=object), "element 1: expected bytes, got int"),
    ],
)
def test_redact_array_refuses_what_is_not_bytes(array, message):
    with pytest.raises(RedactionInputError, match=message):
        Redactor(ALL).redact_array(array, tensor="text")


def test_result_types():
    result = Redactor(ALL).redact("x")
    assert result == RedactionResult("x", {})
    with pytest.raises(AttributeError):
        result.text = "y"  # type: ignore[misc]


# -- properties ------------------------------------------------------------------------

FRAGMENTS = [
    "4111 1111 1111 1111",
    "378282246310005",
    "john@example.com",
    "+44 20 7946 0958",
    "030 901820",
    "(415) 555-2671",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "192.168.1.1",
    "fe80::1",
    "TCK-1234567",
    "2024-05-17",
    "ORD-",
    "ISBN ",
    "978-3-16-148410-0",
    "1.2.3",
    "[EMAIL]",
    "[PHONE]",
    *"-/.@:()[]+07xé \n",
]
FRAGMENT = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(max_size=5),
    st.from_regex(r"[0-9 .\-+()]{1,12}", fullmatch=True),
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVERYTHING = Redactor(ALL, ["TCK-[0-9]{7}"])


@pytest.mark.slow
@PROPERTY
@given(st.text())
def test_random_text_never_crashes_and_redacting_twice_changes_nothing(text: str):
    first = EVERYTHING.redact(text)
    assert EVERYTHING.redact(first.text) == RedactionResult(first.text, {})


@pytest.mark.slow
@PROPERTY
@given(st.lists(FRAGMENT, max_size=12).map("".join))
def test_pii_soup_redacting_twice_changes_nothing(text: str):
    first = EVERYTHING.redact(text)
    assert EVERYTHING.redact(first.text) == RedactionResult(first.text, {})


@pytest.mark.slow
@PROPERTY
@given(st.text(alphabet=st.characters(exclude_categories=["Nd", "Cs"], exclude_characters="@")))
def test_text_without_digits_or_at_is_unchanged(text: str):
    result = Redactor(ALL).redact(text)
    assert result.text is text and result.counts == {}


@pytest.mark.slow
@PROPERTY
@given(st.binary(max_size=64))
def test_random_bytes_are_redacted_or_refused(value: bytes):
    try:
        out = EVERYTHING.redact_bytes(value)
    except RedactionInputError:
        with pytest.raises(UnicodeDecodeError):
            value.decode("utf-8")
    else:
        assert isinstance(out, bytes)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(r"[a-z ]{0,3}[0-9 ()+.\-/]{6,24}[a-z ]{0,3}", fullmatch=True))
def test_prefilter_finds_what_the_bare_matcher_finds(text: str):
    filtered = list(pii_phone.PhoneFinder()(text))
    assert filtered == list(pii_phone.PhoneFinder(prefilter=False)(text))


# -- the texts bench/redaction_bench.py times ---------------------------------------

PROSE = (
    "Thanks for getting back to me so quickly. I have checked the parcel again and "
    "the box was damaged on one side, the manual is missing and the charger does not fit. "
)


def test_a_long_thread_is_redacted_throughout_and_prose_is_left_alone():
    redactor = Redactor(["email", "phone", "credit-card", "iban"], ["TCK-[0-9]{7}"])
    ticket = TICKET[:200]
    thread = ((TICKET + " " + PROSE * 3) * 20)[:10240]
    plain = (PROSE * 60)[:10240]
    assert len(ticket.encode()) == 196 and len(thread) == 10240
    assert redactor.redact(ticket).text == TICKET_REDACTED
    assert thread.count("4111 1111 1111 1111") == 15
    counts = redactor.redact(thread).counts
    assert counts["credit-card"] == 15 and counts["email"] == 15
    assert redactor.redact(plain).text == plain
