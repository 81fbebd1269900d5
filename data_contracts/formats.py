"""Named value formats a contract can require of a string column, as polars expressions."""

from __future__ import annotations

import polars as pl

# ISO 3166-1 alpha-2 and ISO 4217 codes (current ones).
COUNTRY_CODES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC
CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE
GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM
KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH
SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG
VI VN VU WF WS YE YT ZA ZM ZW""".split())
CURRENCY_CODES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY
COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF
YER ZAR ZMW ZWG""".split())

EMAIL = r"(?i)^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"
# A phone that can be brought to E.164: digits with the usual separators, 7 to 15 digits.
PHONE_CHARACTERS = r"^\+?[0-9 ()./-]+$"
URL = r"(?i)^https?://[^\s/$.?#][^\s]*$"
ISO8601 = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


def matches_format(text: pl.Expr, name: str) -> pl.Expr:
    """True where the (trimmed, non-null) value has the named format."""
    if name == "email":
        return text.str.contains(EMAIL)
    if name == "phone":
        digits = text.str.replace_all(r"[^0-9]", "").str.len_chars()
        return text.str.contains(PHONE_CHARACTERS) & digits.is_between(7, 15)
    if name == "url":
        return text.str.contains(URL)
    if name == "country_code":
        return text.str.to_uppercase().is_in(list(COUNTRY_CODES))
    if name == "currency_code":
        return text.str.to_uppercase().is_in(list(CURRENCY_CODES))
    if name == "iso8601":
        return text.str.contains(ISO8601)
    raise ValueError(f"unknown format {name!r}")
