"""Reference data every service shares: prefectures (JIS X 0401), regional blocks, offices, technology
fields, JSIC industries, and the closed vocabularies and validated types of profiles."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Japan keeps no daylight saving time: a fixed offset is exact, and needs no tz database.
JST = timezone(timedelta(hours=9), "JST")


def today_in_japan(now: datetime | None = None) -> date:
    """The calendar date in Japan: expiry dates (``expires_on``) are Japanese dates."""
    return (now or datetime.now(JST)).astimezone(JST).date()


@dataclass(frozen=True)
class RegionalBlock:
    code: str
    name_ja: str
    name_en: str


@dataclass(frozen=True)
class Prefecture:
    code: str  # JIS X 0401, '01'..'47'
    name_ja: str
    name_en: str
    block: str

    @property
    def office_id(self) -> str:
        """The stable id of this prefecture's regional support office (appears in events)."""
        return office_id_for(self.code)


@dataclass(frozen=True)
class TechnologyField:
    code: str
    name_ja: str
    name_en: str


REGIONAL_BLOCKS: dict[str, RegionalBlock] = {
    b.code: b
    for b in (
        RegionalBlock("hokkaido", "北海道", "Hokkaido"),
        RegionalBlock("tohoku", "東北", "Tohoku"),
        RegionalBlock("kanto", "関東", "Kanto"),
        RegionalBlock("chubu", "中部", "Chubu"),
        RegionalBlock("kinki", "近畿", "Kinki"),
        RegionalBlock("chugoku", "中国", "Chugoku"),
        RegionalBlock("shikoku", "四国", "Shikoku"),
        RegionalBlock("kyushu", "九州", "Kyushu"),
        RegionalBlock("okinawa", "沖縄", "Okinawa"),
    )
}

_PREFECTURE_ROWS = [
    ("01", "北海道", "Hokkaido", "hokkaido"),
    ("02", "青森県", "Aomori", "tohoku"),
    ("03", "岩手県", "Iwate", "tohoku"),
    ("04", "宮城県", "Miyagi", "tohoku"),
    ("05", "秋田県", "Akita", "tohoku"),
    ("06", "山形県", "Yamagata", "tohoku"),
    ("07", "福島県", "Fukushima", "tohoku"),
    ("08", "茨城県", "Ibaraki", "kanto"),
    ("09", "栃木県", "Tochigi", "kanto"),
    ("10", "群馬県", "Gunma", "kanto"),
    ("11", "埼玉県", "Saitama", "kanto"),
    ("12", "千葉県", "Chiba", "kanto"),
    ("13", "東京都", "Tokyo", "kanto"),
    ("14", "神奈川県", "Kanagawa", "kanto"),
    ("15", "新潟県", "Niigata", "chubu"),
    ("16", "富山県", "Toyama", "chubu"),
    ("17", "石川県", "Ishikawa", "chubu"),
    ("18", "福井県", "Fukui", "chubu"),
    ("19", "山梨県", "Yamanashi", "chubu"),
    ("20", "長野県", "Nagano", "chubu"),
    ("21", "岐阜県", "Gifu", "chubu"),
    ("22", "静岡県", "Shizuoka", "chubu"),
    ("23", "愛知県", "Aichi", "chubu"),
    ("24", "三重県", "Mie", "kinki"),
    ("25", "滋賀県", "Shiga", "kinki"),
    ("26", "京都府", "Kyoto", "kinki"),
    ("27", "大阪府", "Osaka", "kinki"),
    ("28", "兵庫県", "Hyogo", "kinki"),
    ("29", "奈良県", "Nara", "kinki"),
    ("30", "和歌山県", "Wakayama", "kinki"),
    ("31", "鳥取県", "Tottori", "chugoku"),
    ("32", "島根県", "Shimane", "chugoku"),
    ("33", "岡山県", "Okayama", "chugoku"),
    ("34", "広島県", "Hiroshima", "chugoku"),
    ("35", "山口県", "Yamaguchi", "chugoku"),
    ("36", "徳島県", "Tokushima", "shikoku"),
    ("37", "香川県", "Kagawa", "shikoku"),
    ("38", "愛媛県", "Ehime", "shikoku"),
    ("39", "高知県", "Kochi", "shikoku"),
    ("40", "福岡県", "Fukuoka", "kyushu"),
    ("41", "佐賀県", "Saga", "kyushu"),
    ("42", "長崎県", "Nagasaki", "kyushu"),
    ("43", "熊本県", "Kumamoto", "kyushu"),
    ("44", "大分県", "Oita", "kyushu"),
    ("45", "宮崎県", "Miyazaki", "kyushu"),
    ("46", "鹿児島県", "Kagoshima", "kyushu"),
    ("47", "沖縄県", "Okinawa", "okinawa"),
]

PREFECTURES: dict[str, Prefecture] = {row[0]: Prefecture(*row) for row in _PREFECTURE_ROWS}

# The controlled technology-field taxonomy (broad fields, ja/en labels).
TECHNOLOGY_FIELDS: dict[str, TechnologyField] = {
    f.code: f
    for f in (
        TechnologyField("life_science", "ライフサイエンス", "Life science"),
        TechnologyField("medical_devices", "医療機器・ヘルスケア", "Medical devices and healthcare"),
        TechnologyField("pharma", "創薬・医薬品", "Drug discovery and pharmaceuticals"),
        TechnologyField("agriculture_food", "農林水産・食品", "Agriculture, fisheries and food"),
        TechnologyField("materials", "材料・素材", "Materials"),
        TechnologyField("chemistry", "化学", "Chemistry"),
        TechnologyField("nanotech", "ナノテクノロジー", "Nanotechnology"),
        TechnologyField("manufacturing", "ものづくり・加工技術", "Manufacturing and machining"),
        TechnologyField("mechanical", "機械・ロボット", "Mechanical engineering and robotics"),
        TechnologyField("electronics", "電気・電子・半導体", "Electronics and semiconductors"),
        TechnologyField("information", "情報通信・ソフトウェア", "ICT and software"),
        TechnologyField("ai_data", "AI・データ科学", "AI and data science"),
        TechnologyField("energy", "エネルギー", "Energy"),
        TechnologyField("environment", "環境・リサイクル", "Environment and recycling"),
        TechnologyField("construction", "建築・土木・インフラ", "Construction and infrastructure"),
        TechnologyField("transport", "輸送・モビリティ", "Transport and mobility"),
        TechnologyField("measurement", "計測・分析", "Measurement and analysis"),
        TechnologyField("optics", "光・フォトニクス", "Optics and photonics"),
        TechnologyField("space_marine", "宇宙・海洋", "Space and marine"),
        TechnologyField("disaster_safety", "防災・安全", "Disaster prevention and safety"),
        TechnologyField("social_design", "デザイン・人文社会", "Design, humanities and social science"),
    )
}


@dataclass(frozen=True)
class Industry:
    code: str  # JSIC (日本標準産業分類) major group letter
    name_ja: str
    name_en: str


# The 20 major groups of the Japan Standard Industrial Classification (Rev. 14).
INDUSTRIES: dict[str, Industry] = {
    i.code: i
    for i in (
        Industry("A", "農業，林業", "Agriculture and forestry"),
        Industry("B", "漁業", "Fisheries"),
        Industry("C", "鉱業，採石業，砂利採取業", "Mining and quarrying of stone and gravel"),
        Industry("D", "建設業", "Construction"),
        Industry("E", "製造業", "Manufacturing"),
        Industry("F", "電気・ガス・熱供給・水道業", "Electricity, gas, heat supply and water"),
        Industry("G", "情報通信業", "Information and communications"),
        Industry("H", "運輸業，郵便業", "Transport and postal activities"),
        Industry("I", "卸売業，小売業", "Wholesale and retail trade"),
        Industry("J", "金融業，保険業", "Finance and insurance"),
        Industry("K", "不動産業，物品賃貸業", "Real estate and goods rental and leasing"),
        Industry("L", "学術研究，専門・技術サービス業", "Scientific research, professional and technical services"),
        Industry("M", "宿泊業，飲食サービス業", "Accommodations, eating and drinking services"),
        Industry("N", "生活関連サービス業，娯楽業", "Living-related and personal services and amusement services"),
        Industry("O", "教育，学習支援業", "Education, learning support"),
        Industry("P", "医療，福祉", "Medical, health care and welfare"),
        Industry("Q", "複合サービス事業", "Compound services"),
        Industry("R", "サービス業（他に分類されないもの）", "Services, not elsewhere classified"),
        Industry("S", "公務（他に分類されるものを除く）", "Government, except elsewhere classified"),
        Industry("T", "分類不能の産業", "Industries unable to classify"),
    )
}


def office_id_for(prefecture_code: str) -> str:
    """Office ids are stable: ``office-<JIS code>``."""
    return f"office-{prefecture_code}"


def block_of(prefecture_code: str) -> str:
    return PREFECTURES[prefecture_code].block


OFFICE_IDS: frozenset[str] = frozenset(office_id_for(code) for code in PREFECTURES)
PREFECTURE_OF_OFFICE: dict[str, str] = {office_id_for(code): code for code in PREFECTURES}


# Closed vocabularies used by profiles and events (StrEnum values are the wire values).
class OwnerType(StrEnum):
    """Who offers a seed (public_research_institute: 公設試)."""

    university = "university"
    kosen = "kosen"
    national_lab = "national_lab"
    public_research_institute = "public_research_institute"
    company = "company"
    tlo = "tlo"


class CollaborationForm(StrEnum):
    """How a seed's owner and a company may work together (research_use_free: free for research use)."""

    license = "license"
    assignment = "assignment"
    joint_research = "joint_research"
    technical_consulting = "technical_consulting"
    research_use_free = "research_use_free"
    spin_off = "spin_off"


class CompanySize(StrEnum):
    """The size of the company behind a need."""

    sme = "sme"
    large = "large"
    venture = "venture"


class Confidentiality(StrEnum):
    """Who may see a need: public (anyone), members (offices and partners; company name hidden from
    partners), confidential (the owning office, admins and operators)."""

    public = "public"
    members = "members"
    confidential = "confidential"


class Language(StrEnum):
    """The language a profile's title and summary are written in."""

    ja = "ja"
    en = "en"


class ProfileStatus(StrEnum):
    """A profile's life; only ``open`` profiles are matched. ``expired`` is set by the registry alone,
    when ``expires_on`` has passed (shared.registry holds the legal transitions)."""

    draft = "draft"
    open = "open"
    paused = "paused"
    closed = "closed"
    withdrawn = "withdrawn"
    expired = "expired"


class IpStatus(StrEnum):
    """The kind of IP behind a seed."""

    granted_patent = "granted_patent"
    patent_application = "patent_application"
    know_how = "know_how"
    software = "software"
    none = "none"


class IndustryCode(StrEnum):
    """A JSIC major group letter (labels in INDUSTRIES)."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    N = "N"
    O = "O"  # noqa: E741
    P = "P"
    Q = "Q"
    R = "R"
    S = "S"
    T = "T"


def _known_prefecture(code: str) -> str:
    if code not in PREFECTURES:
        raise ValueError("must be a JIS X 0401 prefecture code, '01'..'47'")
    return code


def _known_field(code: str) -> str:
    if code not in TECHNOLOGY_FIELDS:
        raise ValueError(f"unknown technology field {code!r}; known: {', '.join(TECHNOLOGY_FIELDS)}")
    return code


def _known_block(code: str) -> str:
    if code not in REGIONAL_BLOCKS:
        raise ValueError(f"unknown regional block {code!r}; known: {', '.join(REGIONAL_BLOCKS)}")
    return code


# Section (A-H, or Y for CPC), class, subclass; then optionally main group / subgroup.
_CLASSIFICATION = re.compile(r"^([A-HY][0-9]{2}[A-Z])(?: ?([0-9]{1,4})/([0-9]{2,6}))?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _classification_code(code: str) -> str:
    """IPC/CPC shape, normalised to ``H10N 10/856`` (full-width and case folded, one space)."""
    folded = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", code).strip().upper())
    match = _CLASSIFICATION.match(folded)
    if match is None:
        raise ValueError("not an IPC/CPC code: expected a subclass such as 'G06N' or a group such as 'H10N 10/856'")
    subclass, group, subgroup = match.groups()
    return subclass if group is None else f"{subclass} {group}/{subgroup}"


def _email(address: str) -> str:
    if not _EMAIL.match(address):
        raise ValueError("not an e-mail address")
    return address


# Validated types for request models.
PrefectureCode = Annotated[str, AfterValidator(_known_prefecture)]
FieldCode = Annotated[str, AfterValidator(_known_field)]
BlockCode = Annotated[str, AfterValidator(_known_block)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
ClassificationCode = Annotated[str, StringConstraints(max_length=40), AfterValidator(_classification_code)]
PatentNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
EmailAddress = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)]
