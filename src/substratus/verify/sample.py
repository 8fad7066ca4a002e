"""The built-in training sample `sub verify` hands to train.sh when --data is not given.

Shakespeare, Sonnets XXXI-XXXIV (public domain), one JSONL record
(`{"text": ...}`) per verse line: small enough for any model to finish an
epoch quickly, real enough that a tokenizer or a word model has something to
learn.
"""

from __future__ import annotations

import json

FILENAME = "verify-sample.jsonl"

LINES = (
    'Thy bosom is endeared with all hearts,',
    'Which I by lacking have supposed dead;',
    "And there reigns Love, and all Love's loving parts,",
    'And all those friends which I thought buried.',
    'How many a holy and obsequious tear',
    "Hath dear religious love stol'n from mine eye,",
    'As interest of the dead, which now appear',
    "But things remov'd that hidden in thee lie!",
    'Thou art the grave where buried love doth live,',
    'Hung with the trophies of my lovers gone,',
    'Who all their parts of me to thee did give,',
    'That due of many now is thine alone:',
    "Their images I lov'd, I view in thee,",
    'And thou--all they--hast all the all of me.',
    'If thou survive my well-contented day,',
    'When that churl Death my bones with dust shall cover',
    'And shalt by fortune once more re-survey',
    'These poor rude lines of thy deceased lover,',
    "Compare them with the bett'ring of the time,",
    "And though they be outstripp'd by every pen,",
    'Reserve them for my love, not for their rhyme,',
    'Exceeded by the height of happier men.',
    'O! then vouchsafe me but this loving thought:',
    "'Had my friend's Muse grown with this growing age,",
    'A dearer birth than this his love had brought,',
    'To march in ranks of better equipage:',
    'But since he died and poets better prove,',
    "Theirs for their style I'll read, his for his love'.",
    'Full many a glorious morning have I seen',
    'Flatter the mountain tops with sovereign eye,',
    'Kissing with golden face the meadows green,',
    'Gilding pale streams with heavenly alchemy;',
    'Anon permit the basest clouds to ride',
    'With ugly rack on his celestial face,',
    'And from the forlorn world his visage hide,',
    'Stealing unseen to west with this disgrace:',
    'Even so my sun one early morn did shine,',
    'With all triumphant splendour on my brow;',
    'But out! alack! he was but one hour mine,',
    "The region cloud hath mask'd him from me now.",
    'Yet him for this my love no whit disdaineth;',
    "Suns of the world may stain when heaven's sun staineth.",
    'Why didst thou promise such a beauteous day,',
    'And make me travel forth without my cloak,',
    "To let base clouds o'ertake me in my way,",
    'Hiding thy bravery in their rotten smoke?',
    "'Tis not enough that through the cloud thou break,",
    'To dry the rain on my storm-beaten face,',
)


def sample_jsonl() -> str:
    return "".join(json.dumps({"text": line}) + "\n" for line in LINES)
