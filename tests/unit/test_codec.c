/* Unit tests for core/src/codec.c: a round trip of an Envelope with nested and repeated fields
 * (and of a Classification that carries it), truncated and garbage bytes rejected as invalid,
 * and the size bound enforced before decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sb/codec.h"

typedef struct fixture {
    Switchboard__V1__Attachment att[2];
    Switchboard__V1__Attachment *atts[2];
    Switchboard__V1__DeliveryStatus status;
    char *refs[2];
    uint8_t sealed[64];
    sb_envelope_t env;
} fixture_t;

static void make_envelope(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    switchboard__v1__envelope__init(&f->env);
    f->env.message_id = "5f2c0e";
    f->env.channel = "whatsapp";
    f->env.conversation_id = "c0ffee";
    f->env.partition = 5;
    f->env.received_at_ms = 1795248000123;
    f->env.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_MEDIA;
    f->env.text = "see [EMAIL_1]";
    for (size_t i = 0; i < sizeof f->sealed; i++)
        f->sealed[i] = (uint8_t)(i * 7);
    f->env.sealed_contact.data = f->sealed;
    f->env.sealed_contact.len = sizeof f->sealed;
    for (int i = 0; i < 2; i++) {
        switchboard__v1__attachment__init(&f->att[i]);
        f->att[i].type = i ? "document" : "image";
        f->att[i].mime_type = i ? "application/pdf" : "image/jpeg";
        f->att[i].size = 1000u + (uint64_t)i;
        f->atts[i] = &f->att[i];
    }
    f->env.n_attachments = 2;
    f->env.attachments = f->atts;
    switchboard__v1__delivery_status__init(&f->status);
    f->status.state = "read";
    f->refs[0] = "aa";
    f->refs[1] = "bb";
    f->status.n_ref_message_ids = 2;
    f->status.ref_message_ids = f->refs;
    f->status.error_code = -3;
    f->env.status = &f->status;
    f->env.consent_support_chat = true;
    f->env.batch_index = 300;
}

static void assert_envelope_equal(const sb_envelope_t *a, const sb_envelope_t *b)
{
    assert_string_equal(a->message_id, b->message_id);
    assert_string_equal(a->channel, b->channel);
    assert_string_equal(a->conversation_id, b->conversation_id);
    assert_int_equal(a->partition, b->partition);
    assert_int_equal(a->received_at_ms, b->received_at_ms);
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->text, b->text);
    assert_int_equal(a->sealed_contact.len, b->sealed_contact.len);
    assert_memory_equal(a->sealed_contact.data, b->sealed_contact.data, a->sealed_contact.len);
    assert_int_equal(a->n_attachments, b->n_attachments);
    for (size_t i = 0; i < a->n_attachments; i++) {
        assert_string_equal(a->attachments[i]->type, b->attachments[i]->type);
        assert_string_equal(a->attachments[i]->mime_type, b->attachments[i]->mime_type);
        assert_int_equal(a->attachments[i]->size, b->attachments[i]->size);
    }
    assert_non_null(b->status);
    assert_string_equal(a->status->state, b->status->state);
    assert_int_equal(a->status->n_ref_message_ids, b->status->n_ref_message_ids);
    assert_string_equal(a->status->ref_message_ids[1], b->status->ref_message_ids[1]);
    assert_int_equal(a->status->error_code, b->status->error_code);
    assert_int_equal(a->consent_support_chat, b->consent_support_chat);
    assert_int_equal(a->batch_index, b->batch_index);
}

static void test_envelope_round_trip(void **state)
{
    (void)state;
    fixture_t f;
    make_envelope(&f);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&f.env, &buf, &len), SB_OK);
    assert_non_null(buf);
    assert_int_equal(len, switchboard__v1__envelope__get_packed_size(&f.env));

    sb_envelope_t *back = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, buf, len, &back),
                     SB_OK);
    assert_non_null(back);
    assert_envelope_equal(&f.env, back);
    SB_CODEC_FREE(back);
    free(buf);
}

static void test_classification_carries_envelope(void **state)
{
    (void)state;
    fixture_t f;
    make_envelope(&f);
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    Switchboard__V1__IntentScore s1 = SWITCHBOARD__V1__INTENT_SCORE__INIT;
    Switchboard__V1__IntentScore *top[1] = {&s1};
    s1.intent = "billing";
    s1.confidence = 0.75f;
    c.envelope = &f.env;
    c.intent = "billing";
    c.confidence = 0.75f;
    c.n_top = 1;
    c.top = top;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&c, &buf, &len), SB_OK);
    sb_classification_t *back = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__classification__descriptor, buf, len, &back),
                     SB_OK);
    assert_string_equal(back->intent, "billing");
    assert_true(back->confidence == 0.75f);
    assert_int_equal(back->n_top, 1);
    assert_string_equal(back->top[0]->intent, "billing");
    assert_non_null(back->envelope);
    assert_envelope_equal(&f.env, back->envelope);
    SB_CODEC_FREE(back);
    free(buf);
}

static void test_empty_message(void **state)
{
    (void)state;
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    uint8_t *buf = NULL;
    size_t len = 99;
    assert_int_equal(SB_CODEC_PACK(&e, &buf, &len), SB_OK);
    assert_int_equal(len, 0);
    sb_envelope_t *back = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, buf, 0, &back), SB_OK);
    assert_string_equal(back->text, "");
    SB_CODEC_FREE(back);
    free(buf);
    /* NULL data with zero length is the empty message too */
    back = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, NULL, 0, &back), SB_OK);
    SB_CODEC_FREE(back);
}

static void test_truncated_is_invalid(void **state)
{
    (void)state;
    fixture_t f;
    make_envelope(&f);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&f.env, &buf, &len), SB_OK);
    /* the last field (batch_index, a varint) loses its value */
    sb_envelope_t *back = (sb_envelope_t *)0x1;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, buf, len - 1, &back),
                     SB_E_INVALID);
    assert_ptr_equal(back, (sb_envelope_t *)0x1); /* output untouched on error */
    /* cut inside the sealed_contact bytes: its length prefix promises more than there is */
    size_t cut = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (buf[i] == ((11u << 3) | 2u) && buf[i + 1] == sizeof f.sealed) cut = i + 2 + 10;
    assert_true(cut > 0 && cut < len);
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, buf, cut, &back),
                     SB_E_INVALID);
    free(buf);
}

static void test_garbage_is_invalid(void **state)
{
    (void)state;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    sb_envelope_t *back = NULL;
    assert_int_equal(
        SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, junk, sizeof junk, &back),
        SB_E_INVALID);
    assert_null(back);
    /* a known field with the wrong wire type: text (10) sent as a varint */
    const uint8_t wrong_type[] = {(10u << 3) | 0u, 5};
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, wrong_type,
                                     sizeof wrong_type, &back),
                     SB_E_INVALID);
    assert_null(back);
}

static void test_oversize_rejected(void **state)
{
    (void)state;
    size_t n = SB_CODEC_MAX_BYTES + 1;
    uint8_t *big = calloc(1, n);
    assert_non_null(big);
    sb_envelope_t *back = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, big, n, &back),
                     SB_E_TOO_LARGE);
    assert_null(back);

    /* packing refuses what no consumer would accept */
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'a', n);
    text[n] = '\0';
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    e.text = text;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&e, &buf, &len), SB_E_TOO_LARGE);
    assert_null(buf);
    free(text);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_round_trip),
        cmocka_unit_test(test_classification_carries_envelope),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_truncated_is_invalid),
        cmocka_unit_test(test_garbage_is_invalid),
        cmocka_unit_test(test_oversize_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
