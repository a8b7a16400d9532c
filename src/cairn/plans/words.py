"""The vocabulary the naming rules know: past tenses, verbs, small words and reserved traits.

Everything here is lower case. A word list is data, so it lives apart from the rules that use it.
"""

from __future__ import annotations

__all__ = [
    "IRREGULAR_PAST",
    "NOT_PAST",
    "PARTICLES",
    "RESERVED_CAMEL_TRAITS",
    "SMALL_WORDS",
    "SPEC_EXCEPTIONS",
    "past_of",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Irregular past tenses and past participles ("Email Sent", "Ad Shown", "Invoice Paid").
IRREGULAR_PAST = _words(
    """
    arisen arose ate awoke awoken backslid beat beaten became begun began bent bet bid bit bitten
    bled blew blown bore born borne bought bound bred broadcast broke broken brought built burnt
    burst cast caught chose chosen clung came cost crept cut dealt did done drank drawn dreamt
    drew driven drove drunk dug dwelt eaten fed fell fallen felt fled flew flown flung forbade
    forbidden forecast forgave forgiven forgot forgotten forsook froze frozen gave given gone got
    gotten grew ground grown had heard held hid hidden hit hung hurt kept knelt knew known laid
    lain leant leapt learnt led left lent let lit lost made meant met mislaid misled mistaken
    mistook misunderstood offset outbid outdid outgrew outran outsold overcame overdone overdrawn
    overheard overpaid overran overridden overrode oversaw overseen overslept overtaken overtook
    overthrew overthrown overwritten overwrote paid prebuilt prepaid preset proven put quit ran
    rang read rebuilt redid redone remade repaid reran reread rerun reset resold retold rewound
    rewritten rewrote rid ridden risen rode rose rung said sang sank sat saw seen sent set sewn
    shaken shed shone shook shot shown shrank shrunk shut slain slept slid slit slung smelt sold
    sought spat sped spent spilt split spoke spoken spread sprang sprung spun stank stole stolen
    stood strode struck strung stuck stung sung sunk swam swept swore sworn swum swung taken
    taught thought threw thrown thrust told took tore torn trod trodden typeset unbound undid
    undone undergone underwent understood undertaken undertook unwound upheld upset wept withdrawn
    withdrew withheld withstood woke woken won wore worn wound wove woven written wrote wrung
    """
)

# Words ending in "ed" that are not past tenses ("News Feed Viewed": the action is "Viewed").
NOT_PAST = _words(
    """
    bed breed creed deed embed feed greed hundred kindred need red reed sacred seed shred
    sled speed steed tweed weed wicked naked rugged ragged jagged crooked
    """
)

# Words that may stay lower case inside a Title Case name ("Product Added to Wishlist").
SMALL_WORDS = _words(
    "a an and as at but by for from in into nor of off on onto or over per the to up via with"
)

# Words that complete a verb rather than name an object ("Signed Up", "Logged In", "Opted Out").
PARTICLES = _words("up in out on off down over back away through")

# The reserved identify and group traits that the Segment spec writes in camelCase.
RESERVED_CAMEL_TRAITS = frozenset({"firstName", "lastName", "createdAt", "postalCode"})

# Names of the built-in libraries that break the Object-Action rule on purpose (the B2B SaaS spec
# names them so); they are always accepted.
SPEC_EXCEPTIONS = frozenset({"Signed Up", "Signed In", "Signed Out"})

# Base forms of irregular verbs, with the participle an event name uses ("Email Sent").
_IRREGULAR_BASE = {
    "begin": "begun",
    "break": "broken",
    "bring": "brought",
    "build": "built",
    "buy": "bought",
    "choose": "chosen",
    "do": "done",
    "draw": "drawn",
    "find": "found",
    "forget": "forgotten",
    "give": "given",
    "hide": "hidden",
    "hit": "hit",
    "hold": "held",
    "keep": "kept",
    "leave": "left",
    "lose": "lost",
    "make": "made",
    "meet": "met",
    "pay": "paid",
    "quit": "quit",
    "read": "read",
    "rebuild": "rebuilt",
    "resend": "resent",
    "reset": "reset",
    "run": "run",
    "see": "seen",
    "sell": "sold",
    "send": "sent",
    "set": "set",
    "show": "shown",
    "spend": "spent",
    "take": "taken",
    "tell": "told",
    "throw": "thrown",
    "undo": "undone",
    "win": "won",
    "withdraw": "withdrawn",
    "write": "written",
}

# Regular verbs common in event names. A suggestion is made only for a verb listed here or above,
# so "Click Button" gets "Button Clicked" and an unknown word gets no guess.
_REGULAR_BASE = _words(
    """
    abandon accept activate add answer apply approve archive assign attach authenticate authorize
    block book bookmark bounce browse calculate cancel capture change charge chat check claim
    clear click close collapse comment complete configure confirm connect contact continue convert
    copy create deactivate decline delete deliver deny deploy disable disconnect dismiss dispatch
    download downgrade drag drop edit enable end enroll enter expand expire export fail favorite
    fill filter finish flag focus follow generate grant hover ignore import initiate install
    invite join launch like link load lock log mark merge migrate move mute navigate notify offer
    onboard open opt order pause pin place play post preview print process publish purchase rate
    reach receive recommend record recover redeem refresh refund register reject reload remove
    rename renew reply report request resize restore resume review save scan schedule scroll
    search select share ship sign skip snooze sort start stop submit subscribe suspend swipe switch
    tag tap test toggle track transfer trigger unarchive unassign unblock unfollow uninstall unlink
    unlock unmute unpin unpublish unshare unsubscribe update upgrade upload use validate verify
    view visit vote watch zoom
    """
)

# Regular verbs whose last consonant doubles ("Item Dropped"); Cairn follows Segment's spelling
# "Cancelled".
_DOUBLING = _words(
    "cancel chat drag drop flag log pin scan ship skip stop submit tag tap transfer unpin"
)


def _regular_past(base: str) -> str:
    if base in _DOUBLING:
        return base + base[-1] + "ed"
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2:-1] not in ("a", "e", "o", "u"):
        return base[:-1] + "ied"
    return base + "ed"


def past_of(word: str) -> str | None:
    """The past form of a known verb given in its base or -ing form ("adding" → "added")."""
    for base in _bases(word.lower()):
        if base in _IRREGULAR_BASE:
            return _IRREGULAR_BASE[base]
        if base in _REGULAR_BASE:
            return _regular_past(base)
    return None


def _bases(word: str) -> tuple[str, ...]:
    if not word.endswith("ing") or len(word) < 5:
        return (word,)
    stem = word[:-3]
    undoubled = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else stem
    return (stem, stem + "e", undoubled, stem[:-1] + "ie" if stem.endswith("y") else stem)
