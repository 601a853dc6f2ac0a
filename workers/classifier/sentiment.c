/* Sentiment for en, nl and fr: published lexicons (AFINN-165 for English, the CLiPS Pattern
 * lexicons for Dutch and French; data/lexicons/ TSV files, made by scripts/convert-lexicons and
 * compiled into the binary) with negation, intensifiers and contrast, over the tokens of the
 * tokenizer (case-folded, accents stripped).
 *
 * A word's score is looked up first in the hand-written list below (negators, intensifiers,
 * contrast words, emoji, and customer-service words whose general-purpose rating is wrong
 * here: "help" and "please" are neutral in a support chat, "nul" is harsh in French), then in
 * the lexicon of the message's language (polarity × 4, so AFINN's ±5 → ±4 and Pattern's ±1
 * → ±4); a Pattern modifier with no polarity of its own and an intensity ≥ 1.3 ("heel",
 * "très") is an intensifier. A word preceded within three tokens by a negator ("not",
 * "niet", "pas", "jamais") is flipped and dampened (×-0.74, as in VADER), so "not bad",
 * "niet slecht" and "pas mal" come out positive; an intensifier just before scales it; after
 * "but"/"maar"/"mais" words count 1.5× and before it 0.5×. The sum s is squashed to
 * s / sqrt(s² + 15) in (-1, 1). Languages other than en, nl and fr use all three. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <stdlib.h>

#include "lexicon.h"
#include "sb/util.h"

#define L_EN (1u << NLU_LANG_EN)
#define L_NL (1u << NLU_LANG_NL)
#define L_FR (1u << NLU_LANG_FR)
#define L_ALL 0x1fu

enum { K_WORD = 0, K_NEG = 1 << 8, K_INT = 1 << 9, K_BUT = 1 << 10 };

static const nlu_lex_entry_t words[] = {
    /* negators */
    {"not", 0, L_EN | K_NEG},
    {"no", 0, L_EN | K_NEG},
    {"never", 0, L_EN | K_NEG},
    {"t", 0, L_EN | K_NEG}, /* the "t" of don't, isn't, can't */
    {"cannot", 0, L_EN | K_NEG},
    {"nothing", 0, L_EN | K_NEG},
    {"without", 0, L_EN | K_NEG},
    {"hardly", 0, L_EN | K_NEG},
    {"nor", 0, L_EN | K_NEG},
    {"dont", 0, L_EN | K_NEG},
    {"niet", 0, L_NL | K_NEG},
    {"geen", 0, L_NL | K_NEG},
    {"nooit", 0, L_NL | K_NEG},
    {"niets", 0, L_NL | K_NEG},
    {"niks", 0, L_NL | K_NEG},
    {"nergens", 0, L_NL | K_NEG},
    {"zonder", 0, L_NL | K_NEG},
    {"pas", 0, L_FR | K_NEG},
    {"ne", 0, L_FR | K_NEG},
    {"n", 0, L_FR | K_NEG},
    {"jamais", 0, L_FR | K_NEG},
    {"rien", 0, L_FR | K_NEG},
    {"aucun", 0, L_FR | K_NEG},
    {"aucune", 0, L_FR | K_NEG},
    {"sans", 0, L_FR | K_NEG},
    {"guere", 0, L_FR | K_NEG},
    /* intensifiers */
    {"very", 1.3f, L_EN | K_INT},
    {"really", 1.3f, L_EN | K_INT},
    {"so", 1.3f, L_EN | K_INT},
    {"extremely", 1.5f, L_EN | K_INT},
    {"totally", 1.3f, L_EN | K_INT},
    {"absolutely", 1.4f, L_EN | K_INT},
    {"too", 1.2f, L_EN | K_INT},
    {"incredibly", 1.5f, L_EN | K_INT},
    {"completely", 1.3f, L_EN | K_INT},
    {"heel", 1.3f, L_NL | K_INT},
    {"erg", 1.3f, L_NL | K_INT},
    {"zeer", 1.3f, L_NL | K_INT},
    {"echt", 1.3f, L_NL | K_INT},
    {"ontzettend", 1.5f, L_NL | K_INT},
    {"enorm", 1.4f, L_NL | K_INT},
    {"super", 1.3f, L_NL | L_FR | K_INT},
    {"hartstikke", 1.4f, L_NL | K_INT},
    {"best", 0.0f, L_NL}, /* "best goed": neutral */
    {"tres", 1.3f, L_FR | K_INT},
    {"vraiment", 1.3f, L_FR | K_INT},
    {"trop", 1.2f, L_FR | K_INT},
    {"tellement", 1.4f, L_FR | K_INT},
    {"extremement", 1.5f, L_FR | K_INT},
    {"completement", 1.3f, L_FR | K_INT},
    {"totalement", 1.3f, L_FR | K_INT},
    {"si", 1.2f, L_FR | K_INT},
    /* contrast */
    {"but", 0, L_EN | K_BUT},
    {"however", 0, L_EN | K_BUT},
    {"maar", 0, L_NL | K_BUT},
    {"mais", 0, L_FR | K_BUT},
    {"cependant", 0, L_FR | K_BUT},
    /* English */
    {"good", 2, L_EN},
    {"great", 3, L_EN},
    {"excellent", 3, L_EN | L_FR},
    {"amazing", 3, L_EN},
    {"awesome", 3, L_EN},
    {"love", 3, L_EN},
    {"loved", 3, L_EN},
    {"like", 1.5f, L_EN},
    {"liked", 1.5f, L_EN},
    {"happy", 3, L_EN},
    {"glad", 2, L_EN},
    {"thanks", 2, L_EN},
    {"thank", 2, L_EN},
    {"perfect", 3, L_EN | L_NL},
    {"nice", 2, L_EN},
    {"fine", 1, L_EN},
    {"helpful", 2, L_EN},
    {"fast", 1, L_EN},
    {"quick", 1, L_EN},
    {"wonderful", 3, L_EN},
    {"fantastic", 3, L_EN},
    {"pleased", 2, L_EN},
    {"satisfied", 2, L_EN},
    {"easy", 1, L_EN},
    {"cool", 1, L_EN},
    {"brilliant", 3, L_EN},
    {"appreciate", 2, L_EN},
    {"lovely", 3, L_EN},
    {"friendly", 2, L_EN},
    {"recommend", 2, L_EN},
    {"works", 1, L_EN},
    {"solved", 2, L_EN},
    {"thx", 2, L_EN},
    {"bad", -3, L_EN},
    {"terrible", -3, L_EN | L_FR},
    {"awful", -3, L_EN},
    {"horrible", -3, L_EN | L_FR},
    {"worst", -3, L_EN},
    {"worse", -3, L_EN},
    {"hate", -3, L_EN},
    {"angry", -3, L_EN},
    {"annoyed", -2, L_EN},
    {"annoying", -2, L_EN},
    {"upset", -2, L_EN},
    {"disappointed", -2, L_EN},
    {"disappointing", -2, L_EN},
    {"poor", -2, L_EN},
    {"slow", -2, L_EN},
    {"late", -1, L_EN},
    {"broken", -2, L_EN},
    {"damaged", -2, L_EN},
    {"wrong", -2, L_EN},
    {"problem", -1, L_EN},
    {"issue", -1, L_EN},
    {"complaint", -2, L_EN},
    {"useless", -3, L_EN},
    {"ridiculous", -3, L_EN},
    {"unacceptable", -3, L_EN},
    {"frustrated", -2, L_EN},
    {"frustrating", -2, L_EN},
    {"sad", -2, L_EN},
    {"unhappy", -2, L_EN},
    {"fail", -2, L_EN},
    {"failed", -2, L_EN},
    {"missing", -1, L_EN},
    {"lost", -2, L_EN},
    {"rude", -3, L_EN},
    {"scam", -3, L_EN},
    {"fraud", -3, L_EN},
    {"sucks", -3, L_EN},
    {"stupid", -3, L_EN},
    {"waste", -2, L_EN},
    {"furious", -3, L_EN},
    {"disgusting", -3, L_EN},
    {"pathetic", -3, L_EN},
    {"incompetent", -3, L_EN},
    {"sorry", -1, L_EN},
    {"never", 0, L_EN | K_NEG},
    /* neutral in a support chat, whatever AFINN says */
    {"help", 0, L_EN},
    {"helps", 0, L_EN},
    {"please", 0, L_EN},
    {"support", 0, L_EN},
    {"care", 0, L_EN},
    {"yes", 0, L_EN},
    {"want", 0, L_EN},
    {"wants", 0, L_EN},
    {"sure", 0, L_EN},
    {"ok", 0, L_EN},
    {"okay", 0, L_EN},
    {"question", 0, L_EN},
    {"charged", -1, L_EN},
    {"cancel", 0, L_EN},
    /* Dutch */
    {"goed", 2, L_NL},
    {"geweldig", 3, L_NL},
    {"top", 2, L_NL | L_FR},
    {"fantastisch", 3, L_NL},
    {"prima", 2, L_NL},
    {"fijn", 2, L_NL},
    {"leuk", 2, L_NL},
    {"mooi", 2, L_NL},
    {"blij", 3, L_NL},
    {"tevreden", 2, L_NL},
    {"bedankt", 2, L_NL},
    {"dank", 2, L_NL},
    {"dankjewel", 2, L_NL},
    {"bedank", 2, L_NL},
    {"snel", 1, L_NL},
    {"handig", 2, L_NL},
    {"uitstekend", 3, L_NL},
    {"heerlijk", 3, L_NL},
    {"vriendelijk", 2, L_NL},
    {"behulpzaam", 2, L_NL},
    {"makkelijk", 1, L_NL},
    {"opgelost", 2, L_NL},
    {"aanrader", 2, L_NL},
    {"slecht", -3, L_NL},
    {"slechte", -3, L_NL},
    {"vreselijk", -3, L_NL},
    {"verschrikkelijk", -3, L_NL},
    {"waardeloos", -3, L_NL},
    {"boos", -3, L_NL},
    {"teleurgesteld", -2, L_NL},
    {"teleurstellend", -2, L_NL},
    {"kapot", -2, L_NL},
    {"beschadigd", -2, L_NL},
    {"traag", -2, L_NL},
    {"langzaam", -1, L_NL},
    {"fout", -2, L_NL},
    {"verkeerd", -2, L_NL},
    {"verkeerde", -2, L_NL},
    {"probleem", -1, L_NL},
    {"klacht", -2, L_NL},
    {"belachelijk", -3, L_NL},
    {"onacceptabel", -3, L_NL},
    {"gefrustreerd", -2, L_NL},
    {"ontevreden", -2, L_NL},
    {"jammer", -1, L_NL},
    {"kwijt", -2, L_NL},
    {"onbeleefd", -3, L_NL},
    {"oplichting", -3, L_NL},
    {"oplichters", -3, L_NL},
    {"nutteloos", -3, L_NL},
    {"slechtste", -3, L_NL},
    {"haat", -3, L_NL},
    {"irritant", -2, L_NL},
    {"vervelend", -2, L_NL},
    {"stom", -2, L_NL},
    {"schandalig", -3, L_NL},
    {"woedend", -3, L_NL},
    {"balen", -2, L_NL},
    /* French */
    {"bon", 2, L_FR},
    {"bonne", 2, L_FR},
    {"bien", 2, L_FR},
    {"genial", 3, L_FR},
    {"parfait", 3, L_FR},
    {"merci", 2, L_FR},
    {"content", 2, L_FR},
    {"contente", 2, L_FR},
    {"satisfait", 2, L_FR},
    {"satisfaite", 2, L_FR},
    {"heureux", 3, L_FR},
    {"heureuse", 3, L_FR},
    {"rapide", 1, L_FR},
    {"formidable", 3, L_FR},
    {"magnifique", 3, L_FR},
    {"sympa", 2, L_FR},
    {"aimable", 2, L_FR},
    {"agreable", 2, L_FR},
    {"facile", 1, L_FR},
    {"adore", 3, L_FR},
    {"aime", 2, L_FR},
    {"ravi", 3, L_FR},
    {"ravie", 3, L_FR},
    {"resolu", 2, L_FR},
    {"mal", -2, L_FR},
    {"mauvais", -3, L_FR},
    {"mauvaise", -3, L_FR},
    {"nul", -3, L_FR},
    {"nulle", -3, L_FR},
    {"decu", -2, L_FR},
    {"decue", -2, L_FR},
    {"decevant", -2, L_FR},
    {"furieux", -3, L_FR},
    {"furieuse", -3, L_FR},
    {"enerve", -2, L_FR},
    {"enervee", -2, L_FR},
    {"colere", -3, L_FR},
    {"casse", -2, L_FR},
    {"cassee", -2, L_FR},
    {"abime", -2, L_FR},
    {"lent", -2, L_FR},
    {"lente", -2, L_FR},
    {"retard", -2, L_FR},
    {"probleme", -1, L_FR},
    {"plainte", -2, L_FR},
    {"inacceptable", -3, L_FR},
    {"ridicule", -3, L_FR},
    {"inutile", -2, L_FR},
    {"pire", -3, L_FR},
    {"deteste", -3, L_FR},
    {"triste", -2, L_FR},
    {"perdu", -2, L_FR},
    {"impoli", -3, L_FR},
    {"arnaque", -3, L_FR},
    {"honteux", -3, L_FR},
    {"insatisfait", -2, L_FR},
    {"mecontent", -2, L_FR},
    {"mecontente", -2, L_FR},
    {"frustre", -2, L_FR},
    {"agace", -2, L_FR},
    {"catastrophe", -3, L_FR},
    {"scandaleux", -3, L_FR},
    {"desole", -1, L_FR},
    /* emoji and emoticons */
    {":)", 2, L_ALL},
    {":(", -2, L_ALL},
    {"\xf0\x9f\x98\x80", 2, L_ALL},
    {"\xf0\x9f\x98\x83", 2, L_ALL},
    {"\xf0\x9f\x98\x84", 2, L_ALL},
    {"\xf0\x9f\x98\x81", 2, L_ALL},
    {"\xf0\x9f\x98\x8a", 2, L_ALL},
    {"\xf0\x9f\x99\x82", 1, L_ALL},
    {"\xf0\x9f\x98\x8d", 3, L_ALL},
    {"\xf0\x9f\x91\x8d", 2, L_ALL},
    {"\xe2\x9d\xa4", 3, L_ALL},
    {"\xf0\x9f\x99\x8f", 1, L_ALL},
    {"\xf0\x9f\x98\x9e", -2, L_ALL},
    {"\xf0\x9f\x98\xa0", -3, L_ALL},
    {"\xf0\x9f\x98\xa1", -3, L_ALL},
    {"\xf0\x9f\x98\xa2", -2, L_ALL},
    {"\xf0\x9f\x98\xad", -2, L_ALL},
    {"\xf0\x9f\x91\x8e", -2, L_ALL},
    {"\xf0\x9f\xa4\xac", -3, L_ALL},
    {"\xf0\x9f\x99\x81", -1, L_ALL},
    {"\xf0\x9f\x98\xa4", -2, L_ALL},
};

/* The compiled-in lexicon files (lexicons_data.c, generated from data/lexicons). */
extern const unsigned char nlu_lexicon_en[], nlu_lexicon_nl[], nlu_lexicon_fr[];
extern const size_t nlu_lexicon_en_len, nlu_lexicon_nl_len, nlu_lexicon_fr_len;

#define LEX_SCALE 4.0f

static nlu_lex_t lex;         /* the hand-written list */
static nlu_lex_t lang_lex[3]; /* en, nl, fr lexicons */
static nlu_lex_entry_t *lang_entries[3];
static size_t lang_count[3];
static pthread_once_t lex_once = PTHREAD_ONCE_INIT;

/* Parses one lexicon file (word<TAB>polarity<TAB>intensity, '#' comments) into entries whose
 * words are normalized like message tokens; multi-word entries are left out (negation and
 * intensifiers cover "not good"). */
static void load_lexicon(int li, const unsigned char *data, size_t len, sb_nlu_work_t *w)
{
    size_t cap = 1024, n = 0;
    nlu_lex_entry_t *e = sb_xmalloc(cap * sizeof *e);
    const char *p = (const char *)data, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *t1 = memchr(p, '\t', (size_t)(le - p));
        if (*p != '#' && t1 && t1 > p) {
            char num[32];
            const char *t2 = memchr(t1 + 1, '\t', (size_t)(le - t1 - 1));
            size_t pl = (size_t)((t2 ? t2 : le) - t1 - 1);
            float pol = 0, inten = 1;
            if (pl < sizeof num) {
                memcpy(num, t1 + 1, pl);
                num[pl] = '\0';
                pol = strtof(num, NULL);
            }
            if (t2 && (size_t)(le - t2 - 1) < sizeof num) {
                memcpy(num, t2 + 1, (size_t)(le - t2 - 1));
                num[le - t2 - 1] = '\0';
                inten = strtof(num, NULL);
            }
            const sb_nlu_token_t *toks;
            size_t nt = sb_nlu_work_tokenize(w, p, (size_t)(t1 - p), true, &toks);
            if (nt == 1 && toks[0].kind == SB_NLU_TOK_WORD && isfinite(pol) && isfinite(inten)) {
                if (n == cap) {
                    cap *= 2;
                    e = sb_xrealloc(e, cap * sizeof *e);
                }
                uint32_t flags = 1u << li;
                float v = pol * LEX_SCALE;
                if (fabsf(pol) <= 0.15f && inten >= 1.3f) {
                    /* a modifier: "heel" (1.7), "très" (2.0) → ×1.35, ×1.5 */
                    flags |= K_INT;
                    v = fminf(1.0f + (inten - 1.0f) * 0.5f, 1.5f);
                }
                e[n++] = (nlu_lex_entry_t){sb_xstrndup(toks[0].s, toks[0].len), v, flags};
            }
        }
        p = nl ? nl + 1 : end;
    }
    lang_entries[li] = e;
    lang_count[li] = n;
    nlu_lex_build(&lang_lex[li], e, n);
}

static void lex_init(void)
{
    nlu_lex_build(&lex, words, sizeof words / sizeof words[0]);
    sb_nlu_work_t *w = sb_nlu_work_create();
    load_lexicon(NLU_LANG_EN, nlu_lexicon_en, nlu_lexicon_en_len, w);
    load_lexicon(NLU_LANG_NL, nlu_lexicon_nl, nlu_lexicon_nl_len, w);
    load_lexicon(NLU_LANG_FR, nlu_lexicon_fr, nlu_lexicon_fr_len, w);
    sb_nlu_work_destroy(w);
}

size_t nlu_sentiment_lexicon_size(const char *lang)
{
    pthread_once(&lex_once, lex_init);
    int li = nlu_lang_index(lang);
    return li >= 0 && li <= NLU_LANG_FR ? lang_count[li] : 0;
}

/* The entry for token t: the hand-written list (for the languages in mask), then the
 * lexicon of the language li (-1: each of en, nl, fr in turn). */
static const nlu_lex_entry_t *find(const sb_nlu_token_t *t, uint32_t mask, int li)
{
    if (t->len == 0 || t->len > 40) return NULL;
    uint32_t h = nlu_lex_hash(t->s, t->len);
    const nlu_lex_entry_t *e = nlu_lex_find_h(&lex, t->s, t->len, h);
    if (e && (e->flags & mask)) return e;
    if (t->kind != SB_NLU_TOK_WORD) return NULL;
    if (li >= 0) return nlu_lex_find_h(&lang_lex[li], t->s, t->len, h);
    for (int l = 0; l <= NLU_LANG_FR; l++)
        if ((e = nlu_lex_find_h(&lang_lex[l], t->s, t->len, h))) return e;
    return NULL;
}

float sb_nlu_sentiment(sb_nlu_work_t *w, const char *lang)
{
    pthread_once(&lex_once, lex_init);
    int li = nlu_lang_index(lang);
    uint32_t mask = (li >= 0 && li <= NLU_LANG_FR) ? (1u << li) : L_ALL;
    if (li > NLU_LANG_FR) li = -1;
    double sum = 0;
    int neg_left = 0;      /* tokens left in the current negation scope */
    double int_mult = 1.0; /* pending intensifier */
    double before_but = 0; /* sum before a contrast word */
    bool but_seen = false;
    for (size_t i = 0; i < w->ntoks; i++) {
        const sb_nlu_token_t *t = &w->toks[i];
        const nlu_lex_entry_t *e = find(t, mask, li);
        if (!e) {
            if (neg_left > 0) neg_left--;
            int_mult = 1.0;
            continue;
        }
        if (e->flags & K_NEG) {
            neg_left = 3;
            continue;
        }
        if (e->flags & K_INT) {
            int_mult = e->value;
            if (neg_left > 0) neg_left--;
            continue;
        }
        if (e->flags & K_BUT) {
            before_but = sum;
            sum = 0;
            but_seen = true;
            neg_left = 0;
            int_mult = 1.0;
            continue;
        }
        double v = e->value * int_mult;
        if (neg_left > 0) {
            v *= -0.74;
            neg_left = 0; /* one negation flips one sentiment word */
        }
        sum += v;
        int_mult = 1.0;
    }
    if (but_seen) sum = 0.5 * before_but + 1.5 * sum;
    double s = sum / sqrt(sum * sum + 15.0);
    if (s > 1) s = 1;
    if (s < -1) s = -1;
    return (float)s;
}
