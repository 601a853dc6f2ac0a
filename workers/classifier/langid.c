/* Language identification for en, nl, fr, de and es.
 *
 * Customer messages are short ("hoi", "waar is mijn pakket?"), where character n-gram
 * guessers alone are unreliable, so two signals are combined:
 *   1. a lexicon vote: frequent function words and customer-service words of each language
 *      (a word shared by k languages gives each 1/k of a vote);
 *   2. the out-of-place distance of Cavnar and Trenkle's n-gram text categorization against
 *      libexttextcat's fingerprints of the five languages (its data files; only these five
 *      are loaded), for texts with enough letters. The distance is computed here, the way
 *      libexttextcat computes it, without its per-call allocations (a 64 KB hash table zeroed
 *      and a sort for every text made it the costliest step of a prediction).
 * When neither signal decides (no known word, too few letters), the Envelope's locale hint
 * ("nl-BE") decides; the default is English. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lexicon.h"
#include "sb/util.h"

#define DEFAULT_TEXTCAT_DIR "/usr/share/libexttextcat"
#define NG_MAX 400     /* n-grams in a fingerprint (libexttextcat's MAXNGRAMS) */
#define NG_SYMBOLS 5   /* longest n-gram in characters (MAXNGRAMSYMBOL) */
#define NG_BYTES 20    /* longest n-gram in bytes (MAXNGRAMSIZE) */
#define NG_MISSING 400 /* penalty of an n-gram the language lacks (MAXOUTOFPLACE) */
#define NG_TEXT 1024   /* bytes of a text that the n-grams look at */
#define NG_GRAMS ((NG_TEXT + 3) * NG_SYMBOLS) /* n-grams of a prepared text, at most */
#define NG_SLOTS 32768u                       /* hash slots: a power of two over 4 * NG_GRAMS */

struct sb_nlu_langid {
    /* every n-gram of the loaded fingerprints, with its rank in each language (-1: absent) */
    nlu_lex_t grams;
    nlu_lex_entry_t *entries;
    int16_t (*rank)[NLU_NLANGS];
    size_t n;
    bool any_fp;
};

/* Space-separated, normalized (lower case, no accents). A word may appear in several lists. */
static const char *const lang_words[NLU_NLANGS] = {
    /* en */
    "the a an is are was were be been am i you he she it we they me my your our us them this "
    "that these those what where when why who how which can could would should will shall do "
    "does did don't doesn't not no yes please thanks thank hi hello hey bye goodbye morning "
    "evening afternoon good great bad to of and or but with for from in on at by about into "
    "have has had get got want need like talk speak someone somebody person human agent real "
    "order package parcel delivery deliver shipping refund return item account address "
    "billing change update open opening hours closed today tomorrow still yet there here "
    "just only also any some all my mine myself help problem issue cancel wrong broken "
    "late never ever again much many more most very really too sorry"
    " quick question yeah yep nope cool awesome sure right thing stuff still work works working "
    "arrive arrived arriving received receive send sent back money card charged twice payment pay "
    "paid password forgot account login app crash crashing keeps store shop near price cost costs "
    "much size stock available discount code coupon confirmation subscription cancel service worst "
    "best happy unhappy with without should would could check call me email phone number week day "
    "days ship ships shipped shipping tracking track",
    /* nl */
    "de het een is zijn was waren ben bent ik jij je u hij zij ze wij we jullie mij me mijn "
    "uw onze ons hun dit dat deze die wat waar wanneer waarom wie hoe welke welk kan kun "
    "kunt kunnen zou zouden wil wilt willen moet moeten mag mogen niet geen wel ja nee "
    "graag alsjeblieft alstublieft bedankt dank hoi hallo hoe gaat doei dag tot ziens "
    "goedemorgen goedemiddag goedenavond goed slecht naar van voor met op in aan bij uit "
    "over om en of maar ook nog al heb hebt heeft hebben krijg krijgen bestelling pakket "
    "pakje levering bezorging bezorgd geleverd terug retour retourneren adres "
    "factuuradres wijzigen veranderen aanpassen open geopend gesloten vandaag morgen "
    "openingstijden uur medewerker mens iemand spreken praten echte persoon klantenservice "
    "waarom nooit alweer heel erg veel te sorry helpen hulp probleem kapot annuleren "
    "betaling rekening factuur gewoon even nu er hier daar"
    " oke okee top prima nou hoor even vraagje vraag gekregen ontvangen aangekomen verzonden "
    "verzending bezorger kosten kost hoeveel geld terugkrijgen terugbetaling wachtwoord vergeten "
    "afgeschreven keer bel terug buurt winkel maat voorraad kortingscode werkt bevestiging betaald "
    "abonnement opzeggen slechtste ooit onbeleefd tevreden zou bellen mail week dagen nakijken "
    "steeds app crasht helpen ermee mee wanneer bezorgen zending graag heel erg altijd",
    /* fr */
    "le la les un une des du de est sont etait suis es sommes etes je tu il elle on nous "
    "vous ils elles me moi mon ma mes ton ta tes votre vos notre nos leur ce cet cette ces "
    "que qui quoi ou quand pourquoi comment quel quelle quels quelles peux peut pouvez "
    "pouvons voudrais veux voulez veut dois doit faut ne pas plus jamais rien oui non "
    "merci bonjour bonsoir salut revoir bonne journee soiree avec pour dans sur par sans "
    "chez et mais aussi encore deja ai as avez avons ont commande colis livraison livre "
    "retour rembourser remboursement adresse facturation changer modifier mettre jour "
    "ouvert ouverts ouvrez ouvre ferme fermes aujourd hui demain horaires heures "
    "conseiller personne humain parler quelqu quelqu'un agent vrai service client aide "
    "aider probleme annuler paiement facture tres trop beaucoup bien mal desole "
    "s'il plait svp c'est c est n'est y a il"
    " en ca va tout toute tous bien merci livrez livrer livre colis arrive arrivee jamais "
    "rembourse remboursee quand ouverts ouvert application plante arret resilier abonnement coute "
    "combien pire vu magasin pres chez oublie mot passe debite deux fois rappelez plait suisse "
    "casse cassee retour aider compte voudrais petite question retard probleme facture livreur "
    "impoli changer content produit oui non accord verifier code promo marche paye confirmation "
    "sera nouveau stock taille commander dois est sont",
    /* de */
    "der die das den dem des ein eine einen einem ist sind war waren bin bist ich du er sie "
    "es wir ihr mich mir mein meine meinen meiner dein ihre ihren unser unsere euch uns "
    "was wo wann warum wer wie welche welcher welches kann kannst konnen konnte mochte "
    "mochten will wollen muss mussen darf nicht kein keine ja nein bitte danke dankeschon "
    "hallo tschuss guten morgen abend tag auf wiedersehen gut schlecht zu von fur mit auf "
    "in an bei aus uber um und oder aber auch noch schon habe hast hat haben bekomme "
    "bestellung paket lieferung geliefert ruckgabe zuruck adresse rechnungsadresse "
    "andern aktualisieren offen geoffnet geschlossen heute morgen offnungszeiten uhr "
    "mitarbeiter mensch menschen jemand sprechen reden echten person kundenservice hilfe "
    "helfen problem kaputt stornieren zahlung rechnung sehr zu viel immer nie wieder "
    "leider entschuldigung hier da jetzt"
    " vielen dank danke alles klar super frage paket bestellung nie angekommen geld zuruck "
    "bekommen geoffnet app sturzt standig ab abo kundigen viel kostet versand schlechteste "
    "uberhaupt gibt filiale meiner nahe passwort vergessen wurde doppelt abgebucht rufen zuruck "
    "liefern osterreich artikel kam kaputt stand rucksendung konnen konto helfen wurde gerne "
    "jemandem kurze spat rechnung fahrer unhoflich andere adresse zufrieden produkt passt "
    "gutscheincode funktioniert bezahlt bestatigung lager grosse soll bestellen ihnen sie",
    /* es */
    "el la los las un una unos unas es son era soy eres somos estoy esta estan yo tu el "
    "ella usted nosotros ustedes me mi mis tu tus su sus nuestro nuestra que quien donde "
    "cuando por porque como cual cuales puedo puede pueden podria quiero quiere queria "
    "necesito debo tengo tiene tienen no si gracias hola adios buenos buenas dias tardes "
    "noches hasta luego bien mal con para en de del al y o pero tambien todavia ya "
    "pedido paquete entrega envio enviado devolucion devolver reembolso direccion "
    "facturacion cambiar actualizar abierto abren abre cerrado hoy manana horario horas "
    "agente humano persona hablar alguien real servicio cliente ayuda ayudar problema "
    "roto cancelar pago factura muy mucho demasiado nunca otra vez lo siento favor "
    "aqui ahora"
    " vale perfecto parece talla debo pedir llego nunca devolver dinero abren muchas gracias "
    "aplicacion cierra sola cancelar suscripcion cuanto cuesta envio peor servicio visto hay "
    "tienda cerca olvide contrasena cobraron dos veces llamenme envian articulo roto devolucion "
    "ayudar cuenta quisiera alguien rapida pregunta tarde problema factura repartidor grosero "
    "cambio direccion contento producto revisarlo codigo descuento funciona pague recibi "
    "confirmacion vuelve estar disponible",
};

static nlu_lex_t lex;
static pthread_once_t lex_once = PTHREAD_ONCE_INIT;

static void lex_init(void)
{
    /* count words, then build entries whose flags are the union of languages */
    size_t cap = 0;
    for (int l = 0; l < NLU_NLANGS; l++)
        for (const char *p = lang_words[l]; *p; p++)
            if (*p == ' ') cap++;
    cap += NLU_NLANGS;
    nlu_lex_entry_t *e = sb_xcalloc(cap, sizeof *e);
    size_t n = 0;
    for (int l = 0; l < NLU_NLANGS; l++) {
        const char *p = lang_words[l];
        while (*p) {
            while (*p == ' ')
                p++;
            const char *s = p;
            while (*p && *p != ' ')
                p++;
            size_t wl = (size_t)(p - s);
            if (wl == 0) continue;
            size_t i;
            for (i = 0; i < n; i++)
                if (strlen(e[i].word) == wl && memcmp(e[i].word, s, wl) == 0) break;
            if (i == n) {
                e[n].word = sb_xstrndup(s, wl);
                n++;
            }
            e[i].flags |= 1u << l;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int k = __builtin_popcount(e[i].flags);
        e[i].value = 1.0f / (float)k;
    }
    nlu_lex_build(&lex, e, n);
}

/* Reads a libexttextcat fingerprint (.lm: one n-gram a line, most frequent first, a count
 * after it) into li's table as language l: the first NG_MAX n-grams of at most NG_BYTES bytes,
 * ranked in file order, like libexttextcat's fp_Read. */
static bool read_fingerprint(sb_nlu_langid_t *li, int l, const char *path, size_t *cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[1024];
    int rank = 0;
    while (rank < NG_MAX && fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\r\n");
        if (n == 0 || n > NG_BYTES) continue;
        p[n] = '\0';
        size_t i;
        const nlu_lex_entry_t *e = NULL;
        for (i = 0; i < li->n && !e; i++)
            if (strcmp(li->entries[i].word, p) == 0) e = &li->entries[i];
        if (e) {
            i = (size_t)(e - li->entries);
        } else {
            if (li->n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                li->entries = sb_xrealloc(li->entries, *cap * sizeof *li->entries);
                li->rank = sb_xrealloc(li->rank, *cap * sizeof *li->rank);
            }
            i = li->n++;
            li->entries[i] = (nlu_lex_entry_t){.word = sb_xstrdup(p)};
            for (int k = 0; k < NLU_NLANGS; k++)
                li->rank[i][k] = -1;
        }
        if (li->rank[i][l] < 0) li->rank[i][l] = (int16_t)rank;
        rank++;
    }
    fclose(f);
    return rank > 0;
}

sb_result_t sb_nlu_langid_create(sb_nlu_langid_t **out, const char *datadir)
{
    pthread_once(&lex_once, lex_init);
    sb_nlu_langid_t *li = sb_xcalloc(1, sizeof *li);
    const char *dir = datadir && datadir[0] ? datadir : DEFAULT_TEXTCAT_DIR;
    sb_result_t rc = SB_OK;
    size_t cap = 0;
    for (int l = 0; l < NLU_NLANGS; l++) {
        char *path = sb_xasprintf("%s/%s.lm", dir, nlu_lang_codes[l]);
        if (read_fingerprint(li, l, path, &cap))
            li->any_fp = true;
        else
            rc = SB_E_NOT_FOUND;
        free(path);
    }
    if (li->n) nlu_lex_build(&li->grams, li->entries, li->n);
    *out = li;
    return rc;
}

void sb_nlu_langid_destroy(sb_nlu_langid_t *li)
{
    if (!li) return;
    nlu_lex_free(&li->grams);
    for (size_t i = 0; i < li->n; i++)
        free((char *)li->entries[i].word);
    free(li->entries);
    free(li->rank);
    free(li);
}

/* The n-gram scratch of a work area: the prepared text, its distinct n-grams and a hash
 * table over them, sized for NG_TEXT bytes once and reused. */
typedef struct ngram {
    uint32_t off, hash, count;
    uint8_t len;
} ngram_t;

struct nlu_langid_scratch {
    char buf[NG_TEXT + 3];
    ngram_t grams[NG_GRAMS];
    uint16_t slot[NG_SLOTS];      /* gram index + 1, 0 = empty */
    uint32_t used[NG_GRAMS];      /* slots to clear after the call */
    uint16_t start[NG_GRAMS + 1]; /* counting sort: first place of each count */
    uint16_t order[NG_MAX];
};

void nlu_langid_work_free(sb_nlu_work_t *w)
{
    free(w->langid_scratch);
    w->langid_scratch = NULL;
}

static bool ng_invalid(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '0' && c <= '9');
}

static size_t utf8_len(uint8_t c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* libexttextcat's text preparation: runs of spaces and digits become one '_', and the text
 * starts and ends with one. Returns the length. */
static size_t ng_prepare(char *dst, const char *text, size_t len)
{
    size_t n = 0;
    bool gap = true;
    for (size_t i = 0; i < len && text[i]; i++) {
        uint8_t c = (uint8_t)text[i];
        if (ng_invalid(c)) {
            gap = true;
            continue;
        }
        if (gap) dst[n++] = '_';
        gap = false;
        dst[n++] = (char)c;
    }
    if (n > 0) dst[n++] = '_';
    dst[n] = '\0';
    return n;
}

/* Counts the n-gram buf[off, off + n) in s. */
static void ng_count(struct nlu_langid_scratch *s, size_t *ngrams, size_t *nused, uint32_t mask,
                     uint32_t off, size_t n)
{
    uint32_t h = nlu_lex_hash(s->buf + off, n), i = h & mask;
    for (;;) {
        uint16_t g = s->slot[i];
        if (g == 0) break;
        ngram_t *e = &s->grams[g - 1];
        if (e->hash == h && e->len == n && memcmp(s->buf + e->off, s->buf + off, n) == 0) {
            e->count++;
            return;
        }
        i = (i + 1) & mask;
    }
    s->grams[*ngrams] = (ngram_t){.off = off, .hash = h, .count = 1, .len = (uint8_t)n};
    s->slot[i] = (uint16_t)(++*ngrams);
    s->used[(*nused)++] = i;
}

/* Out-of-place distances of text to the five fingerprints, as libexttextcat's fp_Create and
 * fp_Compare compute them: the text's 1- to 5-character n-grams (an '_' only at their
 * borders), its NG_MAX most frequent ranked (ties: first seen first), and for each of them
 * the difference of its ranks, or NG_MISSING when the language lacks it. False when the text
 * is too short to tell. */
static bool textcat_scores(const sb_nlu_langid_t *li, sb_nlu_work_t *w, const char *text,
                           size_t len, int dist[NLU_NLANGS])
{
    if (!li || !li->any_fp) return false;
    if (!w->langid_scratch) w->langid_scratch = sb_xcalloc(1, sizeof *w->langid_scratch);
    struct nlu_langid_scratch *s = w->langid_scratch;
    if (len > NG_TEXT) len = NG_TEXT;
    size_t n = ng_prepare(s->buf, text, len);
    if (n + 1 < 3) return false; /* libexttextcat's minimum document, set to 3 */
    /* the table holds 4x the n-grams of the prepared text (at most 5 per character) */
    uint32_t size = 64;
    while (size < 4 * NG_SYMBOLS * n && size < NG_SLOTS)
        size <<= 1;
    const uint32_t mask = size - 1;
    size_t ngrams = 0, nused = 0;
    bool end = false;
    for (size_t p = 0; p < n && !end;) {
        size_t q = p, sym = 0;
        while (sym < NG_SYMBOLS) {
            q += utf8_len((uint8_t)s->buf[q]);
            if (q > n) q = n;
            sym++;
            if (q - p <= NG_BYTES) ng_count(s, &ngrams, &nused, mask, (uint32_t)p, q - p);
            if (q >= n) {
                end = true; /* like libexttextcat, the n-grams stop at the text's end */
                break;
            }
            if (sym > 1 && s->buf[q - 1] == '_') break;
        }
        p += utf8_len((uint8_t)s->buf[p]);
    }
    /* rank: most frequent first, first seen first among equals (a counting sort) */
    uint32_t maxc = 0;
    for (size_t g = 0; g < ngrams; g++)
        if (s->grams[g].count > maxc) maxc = s->grams[g].count;
    memset(s->start, 0, ((size_t)maxc + 1) * sizeof *s->start);
    for (size_t g = 0; g < ngrams; g++)
        s->start[s->grams[g].count]++;
    uint32_t placed = 0;
    for (uint32_t c = maxc; c >= 1; c--) {
        uint32_t t = s->start[c];
        s->start[c] = (uint16_t)placed;
        placed += t;
    }
    size_t k = ngrams < NG_MAX ? ngrams : NG_MAX;
    for (size_t g = 0; g < ngrams; g++) {
        uint32_t at = s->start[s->grams[g].count]++;
        if (at < NG_MAX) s->order[at] = (uint16_t)g;
    }
    for (int l = 0; l < NLU_NLANGS; l++)
        dist[l] = 0;
    for (size_t r = 0; r < k; r++) {
        const ngram_t *g = &s->grams[s->order[r]];
        const nlu_lex_entry_t *e = nlu_lex_find_h(&li->grams, s->buf + g->off, g->len, g->hash);
        const int16_t *rk = e ? li->rank[e - li->entries] : NULL;
        for (int l = 0; l < NLU_NLANGS; l++)
            dist[l] += rk && rk[l] >= 0 ? abs(rk[l] - (int)r) : NG_MISSING;
    }
    for (size_t u = 0; u < nused; u++)
        s->slot[s->used[u]] = 0;
    return true;
}

/* Letters that only some of the languages use: "¿", "ñ" (es), "ß", "ö" (de), "ç", "è" (fr),
 * the "ij" of Dutch. Each kind of cue adds to its languages once. */
static void script_cues(const char *text, size_t len, float vote[NLU_NLANGS])
{
    bool es = false, es_acc = false, de = false, de_uml = false, fr = false, nl = false;
    const uint8_t *p = (const uint8_t *)text;
    for (size_t i = 0; i + 1 < len; i++) {
        uint8_t a = p[i], b = p[i + 1];
        if (a == 0xc2 && (b == 0xbf || b == 0xa1)) es = true; /* ¿ ¡ */
        if (a == 0xc3) {
            switch (b) {
            case 0xb1:
            case 0x91:
                es = true;
                break; /* ñ Ñ */
            case 0xa1:
            case 0xad:
            case 0xb3:
            case 0xba:
                es_acc = true;
                break; /* á í ó ú */
            case 0x9f:
                de = true;
                break; /* ß */
            case 0xa4:
            case 0xb6:
            case 0xbc:
            case 0x84:
            case 0x96:
            case 0x9c:
                de_uml = true; /* ä ö ü */
                break;
            case 0xa7:
            case 0x87:
            case 0xa8:
            case 0xaa:
            case 0xa0:
            case 0xb9:
            case 0xa2:
            case 0xae:
            case 0xb4:
            case 0xbb:
                fr = true; /* ç è ê à ù â î ô û */
                break;
            default:
                break;
            }
        }
        if (a == 0xc5 && b == 0x93) fr = true; /* œ */
        if ((a == 'i' || a == 'I') && (b == 'j' || b == 'J') && i > 0 && p[i - 1] != ' ') nl = true;
    }
    if (es) vote[NLU_LANG_ES] += 1.5f;
    if (es_acc) vote[NLU_LANG_ES] += 0.75f;
    if (de) vote[NLU_LANG_DE] += 1.5f;
    if (de_uml) vote[NLU_LANG_DE] += 0.75f;
    if (fr) vote[NLU_LANG_FR] += 0.75f;
    if (nl) vote[NLU_LANG_NL] += 0.5f;
}

const char *sb_nlu_langid_detect(const sb_nlu_langid_t *li, sb_nlu_work_t *w, const char *text,
                                 size_t len, const char *locale_hint)
{
    pthread_once(&lex_once, lex_init);
    float vote[NLU_NLANGS] = {0};
    size_t letters = 0, words = 0, known = 0;
    for (size_t i = 0; i < w->ntoks; i++) {
        const sb_nlu_token_t *t = &w->toks[i];
        if (t->kind != SB_NLU_TOK_WORD) continue;
        words++;
        letters += t->len;
        const nlu_lex_entry_t *e = nlu_lex_find(&lex, t->s, t->len);
        if (!e) continue;
        known++;
        for (int l = 0; l < NLU_NLANGS; l++)
            if (e->flags & (1u << l)) vote[l] += e->value;
    }
    int hint = nlu_lang_index(locale_hint);
    /* the n-gram guess, when there are enough letters to trust it */
    int tc_best = -1;
    /* The word vote alone is decisive when it is strong and clear (most messages with a few
     * function words): the n-gram comparison, by far the costliest step, is then skipped. */
    float v1 = 0, v2 = 0;
    for (int l = 0; l < NLU_NLANGS; l++) {
        if (vote[l] > v1) {
            v2 = v1;
            v1 = vote[l];
        } else if (vote[l] > v2) {
            v2 = vote[l];
        }
    }
    bool decisive = v1 >= 2.0f && v1 - v2 >= 1.5f;
    if (letters >= 16 && !decisive) {
        if (len > SB_NLU_MAX_TEXT) len = SB_NLU_MAX_TEXT;
        int dist[NLU_NLANGS];
        if (textcat_scores(li, w, text, len, dist)) {
            tc_best = 0;
            for (int l = 1; l < NLU_NLANGS; l++)
                if (dist[l] < dist[tc_best]) tc_best = l;
            /* The n-gram guess counts like one and a half known words for the closest
             * language, less for the others by their relative distance: on short texts the
             * distances are close and the guess is weak, so it only tips a balance. */
            double d1 = dist[tc_best] > 0 ? dist[tc_best] : 1;
            for (int l = 0; l < NLU_NLANGS; l++) {
                double rel = ((double)dist[l] - d1) / d1;
                double v = 1.5 * (1.0 - 20.0 * rel);
                if (v > 0) vote[l] += (float)v;
            }
        }
    }
    script_cues(text, len, vote);
    int best = -1;
    float bv = 0, second = 0;
    for (int l = 0; l < NLU_NLANGS; l++) {
        if (vote[l] > bv) {
            second = bv;
            bv = vote[l];
            best = l;
        } else if (vote[l] > second) {
            second = vote[l];
        }
    }
    (void)words;
    (void)known;
    if (best < 0) return hint >= 0 ? nlu_lang_codes[hint] : "en";
    /* a tie, or a single weak vote, is settled by the hint when there is one */
    if (hint >= 0 && (bv - second < 0.5f) && vote[hint] >= second) return nlu_lang_codes[hint];
    return nlu_lang_codes[best];
}
