"""The sample catalogue: twenty hand-written dramas, then as many generated ones as asked.

The seed command of each service loads its own slice of the same catalogue (drama-service the
dramas, episode-service the episodes and their media keys, stream-service the media objects), so
the three databases agree without talking to each other. Everything here is pure and deterministic:
``sample(n)`` returns the same list on every machine, and ``sample(m)`` is a prefix of ``sample(n)``
for ``m <= n``, so a small seed and a large one never disagree about a drama.

All titles and synopses are invented for this project.
"""

from __future__ import annotations

import random

import msgspec

__all__ = ["CatalogDrama", "CatalogEpisode", "media_key", "sample"]

HAND_WRITTEN = 20

# A fixed seed: the generated catalogue is part of the project's test data, not random input.
_SEED = 20_150_101

_MIN_S = 40 * 60
_MAX_S = 75 * 60


class CatalogEpisode(msgspec.Struct, frozen=True):
    number: int
    title: str
    duration_s: int
    media_key: str


class CatalogDrama(msgspec.Struct, frozen=True):
    id: int
    title: str
    synopsis: str
    year: int
    country: str
    genres: tuple[str, ...]
    episodes: tuple[CatalogEpisode, ...]


def media_key(drama_id: int, number: int) -> str:
    """The S3 key of an episode's HLS playlist."""
    return f"dramas/{drama_id}/ep{number:03d}/index.m3u8"


# (title, year, country, genres, episode count, typical episode length in minutes, synopsis).
# The data below is kept as tables: a drama to a paragraph, a word list to a few lines.
# fmt: off
_HAND_WRITTEN: tuple[tuple[str, int, str, tuple[str, ...], int, int, str], ...] = (
    ("The Lantern Keeper's Daughter", 2019, "KR", ("historical", "romance"), 16, 70,
     "In a Joseon port town, a lamplighter's daughter hides a fugitive prince among the night "
     "watch and learns that the fire she tends is the signal his enemies are waiting for."),
    ("Salt and Static", 2023, "KR", ("thriller", "mystery"), 12, 62,
     "A late-night radio host in Busan starts taking calls that describe crimes an hour before "
     "they happen, and the only listener who believes her is the detective she once exposed."),
    ("Nine Bowls of Noodles", 2017, "TW", ("comedy", "family", "food"), 20, 46,
     "Three estranged siblings must cook their late father's nine signature dishes in a single "
     "night market season to keep his Tainan noodle stall."),
    ("The Quiet Hours of Ward Seven", 2021, "KR", ("medical", "drama"), 16, 70,
     "The night shift of a Seoul hospital's neglected ward: a burnt-out surgeon, a first-year "
     "nurse and the patients nobody else has time to listen to."),
    ("Ledger of the Jade Court", 2020, "CN", ("historical", "political", "romance"), 40, 45,
     "A disgraced accountant's daughter audits the imperial treasury and finds that the missing "
     "silver leads back to the prince who hired her."),
    ("Paper Cranes over Kamakura", 2018, "JP", ("slice of life", "family"), 11, 54,
     "A widowed origami teacher and a teenage runaway share a seaside house for one summer and "
     "fold a thousand cranes for a wish neither will say aloud."),
    ("Monsoon Accounting", 2022, "TH", ("romance", "comedy"), 12, 55,
     "A Bangkok auditor sent to close a failing riverside resort falls for its stubborn "
     "manager, and for the numbers that refuse to add up."),
    ("The River Does Not Remember the Sword", 2016, "CN", ("wuxia", "action"), 36, 45,
     "Twenty years after a massacre at Qingshui Pass, a ferry woman with no martial arts "
     "teaches the last survivor how to forget his revenge."),
    ("Second Shift at the Lotus Cafe", 2024, "TH", ("romance", "comedy"), 16, 50,
     "A pastry chef who works days and a jazz pianist who plays nights rent the same Chiang Mai "
     "cafe in turns and fall in love through the notes they leave behind the counter."),
    ("Blue Hour Detective", 2015, "JP", ("mystery", "crime"), 11, 46,
     "Each episode, a retired Osaka detective solves one case between dusk and dark, the only "
     "hour his failing eyesight lets him see clearly."),
    ("Rent Is Due on Thursday", 2016, "KR", ("romance", "comedy"), 16, 65,
     "Four strangers split a rooftop flat in Mapo and a single lease, and every Thursday "
     "somebody comes up short."),
    ("The Archivist of Lost Letters", 2023, "TW", ("fantasy", "romance"), 12, 52,
     "A postal archivist in Taipei delivers letters that went astray decades ago and starts "
     "receiving replies from people who should no longer be alive."),
    ("Iron Orchard", 2021, "CN", ("family", "business", "period"), 36, 45,
     "From a single pear orchard in 1980s Shandong, a family builds an export empire and tears "
     "itself apart over who owns the roots."),
    ("Snowline Express", 2024, "JP", ("suspense", "mystery"), 10, 54,
     "An overnight train to Sapporo is stranded by a blizzard, and one passenger in sleeper car "
     "four is not who the manifest says."),
    ("Under the Banyan, After the Rain", 2019, "TH", ("family", "melodrama"), 18, 60,
     "Three generations of a Nakhon Pathom family gather under one tree to settle an "
     "inheritance and the old quarrels buried with it."),
    ("Operation Winter Magpie", 2025, "CN", ("espionage", "period", "thriller"), 32, 45,
     "Shanghai, 1941: a codebreaker in the puppet government's radio bureau leaks messages to "
     "three rival factions and must keep every one of them believing she is theirs."),
    ("The Ferry Girl of Tongyeong", 2017, "KR", ("romance", "melodrama"), 20, 60,
     "The last ferry pilot on a shrinking island route refuses to sell her boat to the "
     "developer who turns out to be her first love."),
    ("Fifteen Minutes to Curtain", 2022, "KR", ("youth", "music"), 12, 65,
     "A high-school musical loses its lead the night before opening, and the stage manager who "
     "knows every line has to go on."),
    ("Tea House on Dihua Street", 2020, "TW", ("family", "food", "slice of life"), 24, 48,
     "A young pharmacist inherits her grandmother's tea house in Dadaocheng and the regulars "
     "who come with it."),
    ("The Astronomer's Apprentice", 2018, "CN", ("fantasy", "xianxia", "romance"), 40, 45,
     "An orphan who can read fate in the stars is bound as apprentice to the immortal who wrote "
     "hers, and sets out to rewrite the sky."),
)

_ADJECTIVES = (
    "Silent", "Crimson", "Hidden", "Last", "Golden", "Broken", "Midnight", "Secret", "Wandering",
    "Frozen", "Burning", "Distant", "Gentle", "Forgotten", "Scarlet", "Quiet", "Endless", "Hollow",
    "Paper", "Silver", "Falling", "Borrowed", "Restless", "Little",
)

_NOUNS = (
    "Garden", "Promise", "Letter", "Harbor", "Melody", "Lantern", "Orchard", "Kingdom", "Bridge",
    "Mirror", "Season", "Detective", "Bride", "Heir", "Chef", "Doctor", "Tide", "Station",
    "Umbrella", "Secretary", "Witness", "Compass", "Teahouse", "Lighthouse",
)

# Places by country, so that a generated Thai drama is not set in Kyoto.
_PLACES: dict[str, tuple[str, ...]] = {
    "KR": ("Seoul", "Busan", "Jeju", "Incheon", "Gangneung", "Mokpo"),
    "CN": ("Shanghai", "Chengdu", "Hangzhou", "Suzhou", "Xi'an", "Chongqing"),
    "JP": ("Kyoto", "Osaka", "Sapporo", "Yokohama", "Nagasaki", "Kanazawa"),
    "TW": ("Taipei", "Tainan", "Hualien", "Kaohsiung", "Taichung", "Keelung"),
    "TH": ("Bangkok", "Chiang Mai", "Phuket", "Ayutthaya", "Hua Hin", "Khon Kaen"),
}

_PEOPLE = (
    "a young lawyer", "a disgraced prince", "a night-shift nurse", "a street chef",
    "a retired detective", "a struggling actress", "an heiress", "a ferry pilot",
    "a palace physician", "a music teacher", "a debt collector", "a rookie reporter",
)

_PLOTS = (
    "uncovers a secret that could bring down a family empire",
    "strikes a contract marriage that neither side means to keep",
    "returns home after ten years to settle an old debt",
    "must protect a witness nobody else believes",
    "inherits a business on the edge of ruin",
    "chases the truth behind a decades-old disappearance",
    "falls for the rival they were hired to ruin",
    "wakes up with memories of a life they never lived",
)

_GENRES = (
    "romance", "comedy", "thriller", "mystery", "historical", "fantasy", "family", "medical",
    "legal", "crime", "youth", "melodrama", "action", "food", "slice of life",
)

# fmt: on

_COUNTRIES = ("KR", "CN", "JP", "TW", "TH")

# Episode counts and typical lengths by country, as broadcast: Chinese dramas run long with short
# episodes, Japanese dramas are one-cour seasons, Korean dramas are 12-20 long episodes.
_FORMATS: dict[str, tuple[tuple[int, ...], tuple[int, int]]] = {
    "KR": ((12, 16, 16, 20, 24), (60, 75)),
    "CN": ((24, 30, 36, 40, 48), (40, 46)),
    "JP": ((10, 11, 11, 12), (45, 56)),
    "TW": ((12, 13, 20, 24), (45, 60)),
    "TH": ((12, 14, 16, 18), (45, 70)),
}


def sample(count: int | None = None) -> list[CatalogDrama]:
    """The sample catalogue, with ids 1..n.

    ``None`` gives the hand-written catalogue; ``count`` gives its first ``count`` dramas, or all
    of it followed by generated dramas up to ``count``.
    """
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    total = HAND_WRITTEN if count is None else count
    rng = random.Random(_SEED)  # noqa: S311 (sample data, not security)
    dramas = []
    for drama_id in range(1, total + 1):
        if drama_id <= HAND_WRITTEN:
            dramas.append(_hand_written(drama_id, rng))
        else:
            dramas.append(_generated(drama_id, rng))
    return dramas


def _hand_written(drama_id: int, rng: random.Random) -> CatalogDrama:
    title, year, country, genres, count, minutes, synopsis = _HAND_WRITTEN[drama_id - 1]
    return CatalogDrama(
        id=drama_id,
        title=title,
        synopsis=synopsis,
        year=year,
        country=country,
        genres=genres,
        episodes=_episodes(drama_id, count, minutes * 60, rng),
    )


def _generated(drama_id: int, rng: random.Random) -> CatalogDrama:
    country = rng.choice(_COUNTRIES)
    adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
    place = rng.choice(_PLACES[country])
    match rng.randrange(4):
        case 0:
            title = f"The {adjective} {noun}"
        case 1:
            title = f"{noun} of {place}"
        case 2:
            title = f"My {adjective} {noun}"
        case _:
            title = f"{adjective} {noun} in {place}"
    person, plot = rng.choice(_PEOPLE), rng.choice(_PLOTS)
    counts, (low, high) = _FORMATS[country]
    return CatalogDrama(
        id=drama_id,
        title=title,
        synopsis=f"In {place}, {person} {plot}.",
        year=rng.randint(2015, 2025),
        country=country,
        genres=tuple(rng.sample(_GENRES, rng.randint(1, 3))),
        episodes=_episodes(drama_id, rng.choice(counts), rng.randint(low, high) * 60, rng),
    )


def _episodes(
    drama_id: int, count: int, typical_s: int, rng: random.Random
) -> tuple[CatalogEpisode, ...]:
    # Real episodes run a few minutes either side of the slot; premieres and finales run long.
    episodes = []
    for number in range(1, count + 1):
        extra = 300 if number in (1, count) else 0
        duration = min(_MAX_S, max(_MIN_S, typical_s + extra + rng.randint(-180, 180)))
        episodes.append(
            CatalogEpisode(
                number=number,
                title=f"Episode {number}",
                duration_s=duration,
                media_key=media_key(drama_id, number),
            )
        )
    return tuple(episodes)
