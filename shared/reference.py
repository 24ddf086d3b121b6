"""Reference data every service shares: prefectures (JIS X 0401), regional blocks, offices, fields."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, StringConstraints


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


def office_id_for(prefecture_code: str) -> str:
    """Office ids are stable: ``office-<JIS code>``."""
    return f"office-{prefecture_code}"


def block_of(prefecture_code: str) -> str:
    return PREFECTURES[prefecture_code].block


OFFICE_IDS: frozenset[str] = frozenset(office_id_for(code) for code in PREFECTURES)


# Closed vocabularies used by profiles and events (StrEnum values are the wire values).
class OwnerType(StrEnum):
    university = "university"
    kosen = "kosen"
    national_lab = "national_lab"
    public_research_institute = "public_research_institute"
    company = "company"
    tlo = "tlo"


class CollaborationForm(StrEnum):
    license = "license"
    assignment = "assignment"
    joint_research = "joint_research"
    technical_consulting = "technical_consulting"
    research_use_free = "research_use_free"
    spin_off = "spin_off"


class CompanySize(StrEnum):
    sme = "sme"
    large = "large"
    venture = "venture"


class Confidentiality(StrEnum):
    public = "public"
    members = "members"
    confidential = "confidential"


class Language(StrEnum):
    ja = "ja"
    en = "en"


class ProfileStatus(StrEnum):
    draft = "draft"
    open = "open"
    paused = "paused"
    closed = "closed"
    withdrawn = "withdrawn"


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


# Validated types for request models.
PrefectureCode = Annotated[str, AfterValidator(_known_prefecture)]
FieldCode = Annotated[str, AfterValidator(_known_field)]
BlockCode = Annotated[str, AfterValidator(_known_block)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
