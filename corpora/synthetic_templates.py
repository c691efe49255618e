"""Sentence templates and word lists of the synthetic fact-story corpus, as plain data.

`corpora/synthetic.py` draws from these. They live apart so that the extraction engineer can tune
a template for spaCy without touching the generator. Rules every template keeps (the gold
triplets of corpora/synthetic.py assume them):

- `{s}` is the subject (a full name, or a pronoun for person subjects), `{o}` the object value.
- One sentence states exactly one fact, as subject - verb - (preposition) - object or a copula
  ("{s} is a {o}."); the gold relation is the dict key, whatever the tense or verb of the form.
- RECALL templates end with "{o}." so a left-to-right model must predict the value from the left
  context only; their leads are adverbs without nouns or prepositions ("Years later,").
- Filler clauses are intransitive, name nobody, and have no object and no copula with a noun, so
  they yield no triplets.
"""

# Invented names are built from syllables: onset + nucleus (+ coda on the last syllable).
ONSETS = ["b", "br", "d", "dr", "f", "g", "h", "k", "kr", "l", "m", "n", "p", "qu", "r", "s",
          "st", "t", "tr", "v", "z", "th", "sh", "c", "j", "w"]
NUCLEI = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
CODAS = ["", "", "n", "l", "r", "s", "th", "x", "ll", "nd", "ck", "m", "ve", "ne", "sa", "ra"]

ORG_SUFFIXES = ["Labs", "Systems", "Works", "Group", "Foundry", "Institute", "Partners",
                "Industries", "Studios", "Holdings", "Company", "Press", "Clinic", "Bank"]

# Consonant-initial, so "a {o}" is always grammatical.
OCCUPATIONS = ["chemist", "baker", "pilot", "nurse", "teacher", "farmer", "painter", "sailor",
               "lawyer", "dentist", "potter", "tailor", "carpenter", "librarian", "surgeon",
               "gardener", "jeweler", "plumber", "banker", "weaver", "butcher", "singer",
               "writer", "mechanic", "cook", "doctor", "journalist", "pharmacist", "glassblower",
               "beekeeper", "translator", "violinist", "surveyor", "cartographer", "locksmith",
               "geologist", "botanist", "tanner", "firefighter", "mason"]

PRONOUNS = {"female": "she", "male": "he"}

# relation -> forms that state it (present or past tense; the gold relation is the key)
STATEMENT = {
    "works at": ["{s} works at {o}.", "{s} worked at {o}.", "Back then, {s} worked at {o}."],
    "lives in": ["{s} lives in {o}.", "{s} lived in {o}.", "Back then, {s} lived in {o}."],
    "is a": ["{s} is a {o}.", "{s} was a {o}."],
    "born in": ["{s} was born in {o}."],
    "based in": ["{s} is based in {o}.", "{s} was based in {o}."],
    "knows": ["{s} knows {o}.", "{s} knew {o}."],
}

# relation -> forms that state a NEW value of a functional attribute (the gold is the plain
# relation with the new value: "{s} moved to {o}." is (s, lives in, o))
UPDATE = {
    "works at": ["{s} now works at {o}.", "{s} started working at {o}."],
    "lives in": ["{s} moved to {o}.", "Then {s} moved to {o}.", "{s} now lives in {o}."],
    "is a": ["{s} became a {o}.", "{s} is now a {o}."],
}

# relation -> forms that deny a value (gold negated=True)
NEGATION = {
    "works at": ["{s} does not work at {o}.", "{s} never worked at {o}."],
    "lives in": ["{s} does not live in {o}.", "{s} never lived in {o}."],
    "is a": ["{s} is not a {o}.", "{s} was never a {o}."],
    "born in": ["{s} was not born in {o}."],
    "based in": ["{s} is not based in {o}."],
}

# relation -> forms that restate a fact with the value LAST (always with the full name)
RECALL = {
    "works at": ["Years later, {s} still worked at {o}.", "By then, {s} was still working at {o}.",
                 "Even then, {s} worked at {o}.", "Still, {s} worked at {o}."],
    "lives in": ["Years later, {s} still lived in {o}.", "By then, {s} was still living in {o}.",
                 "Even then, {s} lived in {o}.", "Still, {s} lived in {o}."],
    "is a": ["Years later, {s} was still a {o}.", "Even then, {s} was a {o}.",
             "By then, {s} was still a {o}."],
    "born in": ["Of course, {s} was born in {o}.", "After all, {s} was born in {o}."],
}

FILLER_OPENERS = ["Later", "That morning", "That evening", "Soon", "Meanwhile", "Eventually",
                  "Once again", "Afterwards", "Sometimes", "Most days", "Some nights", "Then",
                  "Slowly", "Before long", "Now and then", "That winter", "Every year"]

FILLER_CLAUSES = [
    "it rained", "the wind rose", "the wind died down", "nobody spoke", "nothing much happened",
    "the days grew shorter", "the hours passed slowly", "fresh snow fell overnight", "the trains ran late",
    "the streets stayed quiet", "the river rose", "the lights flickered", "the fog lifted slowly",
    "the market closed early", "the clocks ticked on", "the rain stopped", "the sky cleared",
    "the evenings got longer", "everyone waited", "a dog barked somewhere", "the bells rang",
    "the power went out briefly", "the kettle whistled", "the leaves turned", "the phones stayed silent",
    "the meeting ran long", "the crowd thinned out", "the storm passed", "the town slept",
    "the air felt colder", "the weeks went by", "little changed", "the harbor froze",
    "the roads flooded", "the shops reopened", "the birds returned", "the noise faded",
    "prices kept rising", "the radio crackled", "the doors rattled", "the birds sang loudly",
    "people talked quietly", "somebody laughed", "the tea went cold", "the garden bloomed",
    "the snow melted", "the light faded early", "nobody complained", "the fields dried out",
    "the engines hummed", "the children played outside", "the months slipped away",
]

FILLER_JOINERS = [", and ", ", but ", ", while "]
