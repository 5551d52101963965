/* A command-line driver for the Eclipse Paho C asynchronous client (libpaho-mqtt3a), used by
 * test/integration/test_73_interop_paho_c.py. It runs any number of named clients, is driven by
 * lines on stdin and reports on stdout, one JSON object a line.
 *
 * Command:  <id> <op> key=<hex> key=<hex> ...    (every value is hex-encoded bytes)
 *   connect     name uri cid v(3|4|5) clean keepalive expiry alias_max recv_max user pass
 *               will_topic will_payload will_qos will_retain will_delay will_ct will_up
 *   subscribe   name topic qos nl rap rh subid
 *   unsubscribe name topic
 *   publish     name topic payload qos retain up ct rt cd pfi mei alias
 *   disconnect  name reason
 *   quit
 *   (up / will_up: a user property, repeatable, its value hex(name) ":" hex(value))
 * Reply:    {"ev":"reply","id":N,"ok":0|1,...} once the operation completed (the broker's
 *           acknowledgement arrived) or failed: "reason" (MQTT 5 reason code or 3.1.1 return
 *           code / granted QoS), "code" (library error), "session_present", "props".
 * Events:   {"ev":"message",...}, {"ev":"lost",...}, {"ev":"disconnected",...} (a DISCONNECT
 *           from the broker). Strings and binary data are hex-encoded; properties are
 *           [[identifier, value]...], user properties [38, name, value].
 *
 * Build: gcc -o paho_c_driver paho_c_driver.c -lpaho-mqtt3a
 */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 16
#define MAX_ARGS 64
#define MAX_LINE (4 << 20)

typedef struct {
    char name[64];
    MQTTAsync handle;
    int version;
} client_t;

typedef struct {
    char id[32];
    client_t *c;
} ctx_t;

static client_t clients[MAX_CLIENTS];
static int nclients;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    char key[32];
    unsigned char *val; /* decoded, NUL-terminated */
    int len;
} arg_t;

static arg_t args[MAX_ARGS];
static int nargs;

/* ---- output ------------------------------------------------------------------------------ */

static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
}

static void out_hex(const void *data, int len) {
    const unsigned char *p = data;
    putchar('"');
    for (int i = 0; p && i < len; ++i) printf("%02x", p[i]);
    putchar('"');
}

static void out_props(const MQTTProperties *props) {
    out(",\"props\":[");
    for (int i = 0; props && i < props->count; ++i) {
        const MQTTProperty *p = &props->array[i];
        if (i) out(",");
        out("[%d,", p->identifier);
        switch (MQTTProperty_getType(p->identifier)) {
        case MQTTPROPERTY_TYPE_BYTE: out("%u", p->value.byte); break;
        case MQTTPROPERTY_TYPE_TWO_BYTE_INTEGER: out("%u", p->value.integer2); break;
        case MQTTPROPERTY_TYPE_FOUR_BYTE_INTEGER:
        case MQTTPROPERTY_TYPE_VARIABLE_BYTE_INTEGER: out("%u", p->value.integer4); break;
        case MQTTPROPERTY_TYPE_BINARY_DATA:
        case MQTTPROPERTY_TYPE_UTF_8_ENCODED_STRING:
            out_hex(p->value.data.data, p->value.data.len);
            break;
        case MQTTPROPERTY_TYPE_UTF_8_STRING_PAIR:
            out_hex(p->value.data.data, p->value.data.len);
            out(",");
            out_hex(p->value.value.data, p->value.value.len);
            break;
        default: out("null");
        }
        out("]");
    }
    out("]");
}

static void out_begin(const char *ev, const client_t *c) {
    pthread_mutex_lock(&out_lock);
    out("{\"ev\":\"%s\"", ev);
    if (c) {
        out(",\"client\":");
        out_hex(c->name, (int)strlen(c->name));
    }
}

static void out_end(void) {
    out("}\n");
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void reply_begin(ctx_t *x, int ok) {
    out_begin("reply", x->c);
    out(",\"id\":%s,\"ok\":%d", x->id, ok);
}

static void reply_end(ctx_t *x) {
    out_end();
    free(x);
}

/* ---- callbacks (run on the library's threads) -------------------------------------------- */

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m) {
    client_t *c = ctx;
    if (topic_len == 0) topic_len = (int)strlen(topic);
    out_begin("message", c);
    out(",\"topic\":");
    out_hex(topic, topic_len);
    out(",\"payload\":");
    out_hex(m->payload, m->payloadlen);
    out(",\"qos\":%d,\"retain\":%d,\"dup\":%d", m->qos, m->retained, m->dup);
    out_props(&m->properties);
    out_end();
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_lost(void *ctx, char *cause) {
    out_begin("lost", ctx);
    out_end();
    (void)cause;
}

static void on_disconnected(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc) {
    out_begin("disconnected", ctx);
    out(",\"reason\":%d", rc);
    out_props(props);
    out_end();
}

static void on_ok5(void *ctx, MQTTAsync_successData5 *r) {
    ctx_t *x = ctx;
    reply_begin(x, 1);
    out(",\"reason\":%d", r ? (int)r->reasonCode : 0);
    out_props(r ? &r->properties : NULL);
    reply_end(x);
}

static void on_fail5(void *ctx, MQTTAsync_failureData5 *r) {
    ctx_t *x = ctx;
    reply_begin(x, 0);
    out(",\"reason\":%d,\"code\":%d,\"packet_type\":%d", r ? (int)r->reasonCode : -1,
        r ? r->code : -1, r ? r->packet_type : -1);
    out_props(r ? &r->properties : NULL);
    reply_end(x);
}

static void on_ok3(void *ctx, MQTTAsync_successData *r) {
    ctx_t *x = ctx;
    reply_begin(x, 1);
    reply_end(x);
    (void)r;
}

static void on_fail3(void *ctx, MQTTAsync_failureData *r) {
    ctx_t *x = ctx;
    reply_begin(x, 0);
    out(",\"code\":%d", r ? r->code : -1);
    reply_end(x);
}

static void on_connected5(void *ctx, MQTTAsync_successData5 *r) {
    ctx_t *x = ctx;
    reply_begin(x, 1);
    out(",\"reason\":%d,\"session_present\":%d", (int)r->reasonCode, r->alt.connect.sessionPresent);
    out_props(&r->properties);
    reply_end(x);
}

static void on_connected3(void *ctx, MQTTAsync_successData *r) {
    ctx_t *x = ctx;
    reply_begin(x, 1);
    out(",\"reason\":0,\"session_present\":%d", r->alt.connect.sessionPresent);
    reply_end(x);
}

static void on_subscribed3(void *ctx, MQTTAsync_successData *r) {
    ctx_t *x = ctx;
    reply_begin(x, 1);
    out(",\"reason\":%d", r->alt.qos);
    reply_end(x);
}

static void on_sub_fail3(void *ctx, MQTTAsync_failureData *r) {
    ctx_t *x = ctx;
    reply_begin(x, 0);
    out(",\"reason\":%d,\"code\":%d", r ? r->code : -1, r ? r->code : -1);
    reply_end(x);
}

/* ---- command parsing --------------------------------------------------------------------- */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int unhex(const char *src, int n, unsigned char *dst) {
    for (int i = 0; i < n; ++i) {
        int hi = hexval(src[2 * i]), lo = hexval(src[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        dst[i] = (unsigned char)(hi * 16 + lo);
    }
    return 0;
}

static int parse_args(char *p) {
    for (int i = 0; i < nargs; ++i) free(args[i].val);
    nargs = 0;
    while (*p) {
        while (*p == ' ') ++p;
        if (!*p) break;
        char *eq = strchr(p, '=');
        if (!eq || nargs == MAX_ARGS || eq - p >= (long)sizeof(args[0].key)) return -1;
        arg_t *a = &args[nargs++];
        memcpy(a->key, p, eq - p);
        a->key[eq - p] = 0;
        p = eq + 1;
        char *end = p;
        while (*end && *end != ' ') ++end;
        a->len = (int)((end - p) / 2);
        a->val = malloc(a->len + 1);
        if (unhex(p, a->len, a->val) != 0) return -1;
        a->val[a->len] = 0;
        p = end;
    }
    return 0;
}

static arg_t *arg(const char *key) {
    for (int i = 0; i < nargs; ++i)
        if (strcmp(args[i].key, key) == 0) return &args[i];
    return NULL;
}

static const char *str_arg(const char *key, const char *dflt) {
    arg_t *a = arg(key);
    return a ? (const char *)a->val : dflt;
}

static int int_arg(const char *key, int dflt) {
    arg_t *a = arg(key);
    return a ? atoi((const char *)a->val) : dflt;
}

static client_t *find_client(const char *name) {
    for (int i = 0; i < nclients; ++i)
        if (strcmp(clients[i].name, name) == 0) return &clients[i];
    return NULL;
}

/* MQTTProperties_add copies string and binary data, so the arguments may go afterwards. */
static void add_int_prop(MQTTProperties *props, enum MQTTPropertyCodes id, const char *key) {
    if (!arg(key)) return;
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = id;
    int value = int_arg(key, 0);
    switch (MQTTProperty_getType(id)) {
    case MQTTPROPERTY_TYPE_BYTE: p.value.byte = (unsigned char)value; break;
    case MQTTPROPERTY_TYPE_TWO_BYTE_INTEGER: p.value.integer2 = (unsigned short)value; break;
    default: p.value.integer4 = (unsigned int)value;
    }
    MQTTProperties_add(props, &p);
}

static void add_bin_prop(MQTTProperties *props, enum MQTTPropertyCodes id, const char *key) {
    arg_t *a = arg(key);
    if (!a) return;
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = id;
    p.value.data.data = (char *)a->val;
    p.value.data.len = a->len;
    MQTTProperties_add(props, &p);
}

static void add_user_props(MQTTProperties *props, const char *key) {
    for (int i = 0; i < nargs; ++i) {
        if (strcmp(args[i].key, key) != 0) continue;
        const char *s = (const char *)args[i].val;
        const char *colon = strchr(s, ':');
        if (!colon) continue;
        int klen = (int)(colon - s) / 2, vlen = (int)strlen(colon + 1) / 2;
        unsigned char *k = malloc(klen + 1), *v = malloc(vlen + 1);
        if (unhex(s, klen, k) == 0 && unhex(colon + 1, vlen, v) == 0) {
            MQTTProperty p;
            memset(&p, 0, sizeof p);
            p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
            p.value.data.data = (char *)k;
            p.value.data.len = klen;
            p.value.value.data = (char *)v;
            p.value.value.len = vlen;
            MQTTProperties_add(props, &p);
        }
        free(k);
        free(v);
    }
}

/* ---- commands ---------------------------------------------------------------------------- */

static ctx_t *new_ctx(const char *id, client_t *c) {
    ctx_t *x = calloc(1, sizeof *x);
    snprintf(x->id, sizeof x->id, "%.20s", id);
    x->c = c;
    return x;
}

/* An API call refused at once: its callbacks will not run. */
static void refused(ctx_t *x, int rc) {
    reply_begin(x, 0);
    out(",\"code\":%d,\"sync\":1", rc);
    reply_end(x);
}

static void cmd_connect(ctx_t *x) {
    const char *name = str_arg("name", "c");
    client_t *c = find_client(name);
    if (!c) {
        if (nclients == MAX_CLIENTS) { refused(x, -100); return; }
        c = &clients[nclients++];
        snprintf(c->name, sizeof c->name, "%s", name);
    } else if (c->handle) {
        MQTTAsync_destroy(&c->handle);
    }
    x->c = c;
    c->version = int_arg("v", 5);
    MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
    copts.MQTTVersion = c->version;
    int rc = MQTTAsync_createWithOptions(&c->handle, str_arg("uri", ""), str_arg("cid", ""),
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
    if (rc != MQTTASYNC_SUCCESS) { c->handle = NULL; refused(x, rc); return; }
    MQTTAsync_setCallbacks(c->handle, c, on_lost, on_message, NULL);
    if (c->version == 5) MQTTAsync_setDisconnected(c->handle, c, on_disconnected);

    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions o3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions *o = c->version == 5 ? &o5 : &o3;
    o->MQTTVersion = c->version;
    o->keepAliveInterval = int_arg("keepalive", 30);
    o->connectTimeout = 10;
    o->automaticReconnect = 0;
    o->context = x;
    if (c->version == 5) {
        o->cleanstart = int_arg("clean", 1);
        o->onSuccess5 = on_connected5;
        o->onFailure5 = on_fail5;
    } else {
        o->cleansession = int_arg("clean", 1);
        o->onSuccess = on_connected3;
        o->onFailure = on_fail3;
    }
    o->username = str_arg("user", NULL);
    o->password = str_arg("pass", NULL);

    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    arg_t *wt = arg("will_topic");
    if (wt) {
        arg_t *wp = arg("will_payload");
        will.topicName = (const char *)wt->val;
        will.payload.data = wp && wp->len ? wp->val : NULL;
        will.payload.len = wp ? wp->len : 0;
        will.qos = int_arg("will_qos", 0);
        will.retained = int_arg("will_retain", 0);
        o->will = &will;
    }
    MQTTProperties cprops = MQTTProperties_initializer, wprops = MQTTProperties_initializer;
    if (c->version == 5) {
        add_int_prop(&cprops, MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL, "expiry");
        add_int_prop(&cprops, MQTTPROPERTY_CODE_TOPIC_ALIAS_MAXIMUM, "alias_max");
        add_int_prop(&cprops, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM, "recv_max");
        add_int_prop(&wprops, MQTTPROPERTY_CODE_WILL_DELAY_INTERVAL, "will_delay");
        add_bin_prop(&wprops, MQTTPROPERTY_CODE_CONTENT_TYPE, "will_ct");
        add_user_props(&wprops, "will_up");
        o->connectProperties = &cprops;
        o->willProperties = &wprops;
    }
    rc = MQTTAsync_connect(c->handle, o);
    MQTTProperties_free(&cprops);
    MQTTProperties_free(&wprops);
    if (rc != MQTTASYNC_SUCCESS) refused(x, rc);
}

static client_t *client_for(ctx_t *x) {
    client_t *c = find_client(str_arg("name", "c"));
    if (!c || !c->handle) {
        refused(x, -101);
        return NULL;
    }
    x->c = c;
    return c;
}

static void set_callbacks(MQTTAsync_responseOptions *ro, client_t *c, ctx_t *x) {
    ro->context = x;
    if (c->version == 5) {
        ro->onSuccess5 = on_ok5;
        ro->onFailure5 = on_fail5;
    } else {
        ro->onSuccess = on_ok3;
        ro->onFailure = on_fail3;
    }
}

static void cmd_subscribe(ctx_t *x) {
    client_t *c = client_for(x);
    if (!c) return;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    set_callbacks(&ro, c, x);
    if (c->version == 5) {
        ro.subscribeOptions.noLocal = (unsigned char)int_arg("nl", 0);
        ro.subscribeOptions.retainAsPublished = (unsigned char)int_arg("rap", 0);
        ro.subscribeOptions.retainHandling = (unsigned char)int_arg("rh", 0);
        add_int_prop(&ro.properties, MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER, "subid");
    } else {
        ro.onSuccess = on_subscribed3;
        ro.onFailure = on_sub_fail3;
    }
    int rc = MQTTAsync_subscribe(c->handle, str_arg("topic", ""), int_arg("qos", 0), &ro);
    MQTTProperties_free(&ro.properties);
    if (rc != MQTTASYNC_SUCCESS) refused(x, rc);
}

static void cmd_unsubscribe(ctx_t *x) {
    client_t *c = client_for(x);
    if (!c) return;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    set_callbacks(&ro, c, x);
    int rc = MQTTAsync_unsubscribe(c->handle, str_arg("topic", ""), &ro);
    if (rc != MQTTASYNC_SUCCESS) refused(x, rc);
}

static void cmd_publish(ctx_t *x) {
    client_t *c = client_for(x);
    if (!c) return;
    arg_t *payload = arg("payload");
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = payload ? payload->val : NULL;
    m.payloadlen = payload ? payload->len : 0;
    m.qos = int_arg("qos", 0);
    m.retained = int_arg("retain", 0);
    if (c->version == 5) {
        add_user_props(&m.properties, "up");
        add_bin_prop(&m.properties, MQTTPROPERTY_CODE_CONTENT_TYPE, "ct");
        add_bin_prop(&m.properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC, "rt");
        add_bin_prop(&m.properties, MQTTPROPERTY_CODE_CORRELATION_DATA, "cd");
        add_int_prop(&m.properties, MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR, "pfi");
        add_int_prop(&m.properties, MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL, "mei");
        add_int_prop(&m.properties, MQTTPROPERTY_CODE_TOPIC_ALIAS, "alias");
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    set_callbacks(&ro, c, x);
    int rc = MQTTAsync_sendMessage(c->handle, str_arg("topic", ""), &m, &ro);
    MQTTProperties_free(&m.properties);
    if (rc != MQTTASYNC_SUCCESS) refused(x, rc);
}

static void cmd_disconnect(ctx_t *x) {
    client_t *c = client_for(x);
    if (!c) return;
    MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnectOptions d3 = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions *d = c->version == 5 ? &d5 : &d3;
    d->timeout = 2000;
    d->context = x;
    if (c->version == 5) {
        d->reasonCode = int_arg("reason", 0);
        d->onSuccess5 = on_ok5;
        d->onFailure5 = on_fail5;
    } else {
        d->onSuccess = on_ok3;
        d->onFailure = on_fail3;
    }
    int rc = MQTTAsync_disconnect(c->handle, d);
    if (rc != MQTTASYNC_SUCCESS) refused(x, rc);
}

int main(void) {
    static char line[MAX_LINE];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    out_begin("ready", NULL);
    out_end();
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        char *sp1 = strchr(line, ' ');
        if (!sp1) continue;
        *sp1 = 0;
        char *op = sp1 + 1;
        char *sp2 = strchr(op, ' ');
        char *rest = "";
        if (sp2) { *sp2 = 0; rest = sp2 + 1; }
        ctx_t *x = new_ctx(line, NULL);
        if (parse_args(rest) != 0) { refused(x, -102); continue; }
        if (strcmp(op, "connect") == 0) cmd_connect(x);
        else if (strcmp(op, "subscribe") == 0) cmd_subscribe(x);
        else if (strcmp(op, "unsubscribe") == 0) cmd_unsubscribe(x);
        else if (strcmp(op, "publish") == 0) cmd_publish(x);
        else if (strcmp(op, "disconnect") == 0) cmd_disconnect(x);
        else if (strcmp(op, "quit") == 0) { reply_begin(x, 1); reply_end(x); break; }
        else refused(x, -103);
    }
    for (int i = 0; i < nclients; ++i)
        if (clients[i].handle) MQTTAsync_destroy(&clients[i].handle);
    return 0;
}
