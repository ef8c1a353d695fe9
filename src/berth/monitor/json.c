/* The little JSON berth-monitor speaks: one-line request objects in, short
 * replies and log entries out. Read as Python's json module reads them
 * (strict strings, NaN/Infinity accepted, the last of duplicate keys wins),
 * so the Python shim and this program answer the same lines the same way. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor.h"

#define MAX_DEPTH 64

long utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
	unsigned c = s[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t need;
	if (c < 0x80) {
		*adv = 1;
		return c;
	}
	if (c < 0xC2) {
		*adv = 1;
		return -1;
	}
	if (c < 0xE0) {
		need = 1;
	} else if (c < 0xF0) {
		need = 2;
		if (c == 0xE0)
			lo = 0xA0;   /* overlong */
		if (c == 0xED)
			hi = 0x9F;   /* surrogates */
	} else if (c < 0xF5) {
		need = 3;
		if (c == 0xF0)
			lo = 0x90;   /* overlong */
		if (c == 0xF4)
			hi = 0x8F;   /* above U+10FFFF */
	} else {
		*adv = 1;
		return -1;
	}
	if (n < 2 || s[1] < lo || s[1] > hi) {
		*adv = 1;
		return -1;
	}
	for (size_t i = 2; i <= need; i++) {
		if (i >= n || (s[i] & 0xC0) != 0x80) {
			*adv = i;
			return -1;
		}
	}
	long cp = c & (0x3F >> need);
	for (size_t i = 1; i <= need; i++)
		cp = (cp << 6) | (s[i] & 0x3F);
	*adv = need + 1;
	return cp;
}

static void put_utf8(struct buf *b, long cp)
{
	char u[4];
	if (cp < 0x80) {
		u[0] = cp;
		buf_add(b, u, 1);
	} else if (cp < 0x800) {
		u[0] = 0xC0 | (cp >> 6);
		u[1] = 0x80 | (cp & 0x3F);
		buf_add(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = 0xE0 | (cp >> 12);
		u[1] = 0x80 | ((cp >> 6) & 0x3F);
		u[2] = 0x80 | (cp & 0x3F);
		buf_add(b, u, 3);
	} else {
		u[0] = 0xF0 | (cp >> 18);
		u[1] = 0x80 | ((cp >> 12) & 0x3F);
		u[2] = 0x80 | ((cp >> 6) & 0x3F);
		u[3] = 0x80 | (cp & 0x3F);
		buf_add(b, u, 4);
	}
}

void json_str(struct buf *b, const char *s, size_t n, bool ascii)
{
	const unsigned char *p = (const unsigned char *)s;
	buf_add(b, "\"", 1);
	size_t i = 0;
	while (i < n) {
		/* a run that needs no escape goes in one copy */
		size_t j = i;
		while (j < n && p[j] >= 0x20 && p[j] < 0x7F && p[j] != '"' && p[j] != '\\')
			j++;
		if (j > i) {
			buf_add(b, p + i, j - i);
			i = j;
			continue;
		}
		size_t adv;
		long cp = utf8_next(p + i, n - i, &adv);
		if (cp < 0)
			cp = 0xFFFD;
		switch (cp) {
		case '"': buf_adds(b, "\\\""); break;
		case '\\': buf_adds(b, "\\\\"); break;
		case '\b': buf_adds(b, "\\b"); break;
		case '\f': buf_adds(b, "\\f"); break;
		case '\n': buf_adds(b, "\\n"); break;
		case '\r': buf_adds(b, "\\r"); break;
		case '\t': buf_adds(b, "\\t"); break;
		default:
			if (cp < 0x20) {
				buf_addf(b, "\\u%04lx", cp);
			} else if (!ascii || cp < 0x7F) {
				put_utf8(b, cp);
			} else if (cp < 0x10000) {
				buf_addf(b, "\\u%04lx", cp);
			} else {
				long v = cp - 0x10000;
				buf_addf(b, "\\u%04lx\\u%04lx", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
			}
		}
		i += adv;
	}
	buf_add(b, "\"", 1);
}

/* ---------------------------------------------------------------- parser */

struct parser {
	const unsigned char *s;
	size_t n, i;
	int depth;
};

static void ws(struct parser *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n'
			       || p->s[p->i] == '\r'))
		p->i++;
}

static bool lit(struct parser *p, const char *word)
{
	size_t k = strlen(word);
	if (p->n - p->i < k || memcmp(p->s + p->i, word, k) != 0)
		return false;
	p->i += k;
	return true;
}

static int hex4(struct parser *p, long *out)
{
	if (p->n - p->i < 4)
		return -1;
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int c = p->s[p->i + k];
		if (!isxdigit(c))
			return -1;
		v = v * 16 + (isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
	}
	p->i += 4;
	*out = v;
	return 0;
}

/* A string at p (after its quote) into out (cut at cap-1 bytes); out may
 * be NULL. Returns its decoded length or -1. */
static long string(struct parser *p, char *out, size_t cap)
{
	struct buf b = {0};
	long len = -1;
	for (;;) {
		if (p->i >= p->n)
			goto done;
		unsigned c = p->s[p->i];
		if (c == '"') {
			p->i++;
			break;
		}
		if (c < 0x20)
			goto done;   /* strict: no raw control characters */
		if (c == '\\') {
			if (++p->i >= p->n)
				goto done;
			c = p->s[p->i++];
			long cp;
			switch (c) {
			case '"': case '\\': case '/': buf_add(&b, &c, 1); break;
			case 'b': buf_add(&b, "\b", 1); break;
			case 'f': buf_add(&b, "\f", 1); break;
			case 'n': buf_add(&b, "\n", 1); break;
			case 'r': buf_add(&b, "\r", 1); break;
			case 't': buf_add(&b, "\t", 1); break;
			case 'u':
				if (hex4(p, &cp) < 0)
					goto done;
				if (cp >= 0xD800 && cp < 0xDC00 && p->n - p->i >= 6
				    && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
					size_t save = p->i;
					long lo;
					p->i += 2;
					if (hex4(p, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000)
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					else
						p->i = save;
				}
				put_utf8(&b, cp);
				break;
			default:
				goto done;
			}
			continue;
		}
		size_t adv;
		if (utf8_next(p->s + p->i, p->n - p->i, &adv) < 0)
			buf_add(&b, "\xEF\xBF\xBD", 3);
		else
			buf_add(&b, p->s + p->i, adv);
		p->i += adv;
	}
	len = b.len;
	if (out && cap) {
		size_t k = b.len < cap - 1 ? b.len : cap - 1;
		memcpy(out, buf_data(&b), k);
		out[k] = 0;
	}
done:
	buf_free(&b);
	return len;
}

static int value(struct parser *p, struct jval *v);

static int number(struct parser *p, struct jval *v)
{
	size_t start = p->i;
	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i >= p->n || !isdigit(p->s[p->i]))
		return -1;
	if (p->s[p->i] == '0')
		p->i++;
	else
		while (p->i < p->n && isdigit(p->s[p->i]))
			p->i++;
	bool is_float = false;
	if (p->i + 1 < p->n && p->s[p->i] == '.' && isdigit(p->s[p->i + 1])) {
		is_float = true;
		p->i++;
		while (p->i < p->n && isdigit(p->s[p->i]))
			p->i++;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		size_t k = p->i + 1;
		if (k < p->n && (p->s[k] == '+' || p->s[k] == '-'))
			k++;
		if (k < p->n && isdigit(p->s[k])) {
			is_float = true;
			p->i = k;
			while (p->i < p->n && isdigit(p->s[p->i]))
				p->i++;
		}
	}
	char text[64];
	size_t len = p->i - start;
	if (len >= sizeof text) {
		/* only an integer can be this long and still be JSON we keep */
		v->type = is_float ? J_FLOAT : J_INT;
		v->big = true;
		v->truthy = true;
		v->num = p->s[start] == '-' ? -1 : 1;
		return 0;
	}
	memcpy(text, p->s + start, len);
	text[len] = 0;
	if (is_float) {
		v->type = J_FLOAT;
		v->truthy = strtod(text, NULL) != 0.0;
		return 0;
	}
	v->type = J_INT;
	v->num = strtoll(text, NULL, 10);
	v->big = len > 18;
	v->truthy = !(strcmp(text, "0") == 0 || strcmp(text, "-0") == 0);
	return 0;
}

static int container(struct parser *p, struct jval *v, struct jobj *members)
{
	char close = p->s[p->i] == '{' ? '}' : ']';
	bool obj = close == '}';
	if (++p->depth > MAX_DEPTH)
		return -1;
	p->i++;
	v->type = obj ? J_OBJECT : J_ARRAY;
	v->truthy = false;
	ws(p);
	if (p->i < p->n && p->s[p->i] == close) {
		p->i++;
		p->depth--;
		return 0;
	}
	for (;;) {
		struct jval m = {0};
		if (obj) {
			ws(p);
			if (p->i >= p->n || p->s[p->i] != '"')
				return -1;
			p->i++;
			if (string(p, m.key, sizeof m.key) < 0)
				return -1;
			ws(p);
			if (p->i >= p->n || p->s[p->i] != ':')
				return -1;
			p->i++;
		}
		ws(p);
		if (value(p, &m) < 0)
			return -1;
		v->truthy = true;
		if (members && members->n < JSON_MAX_MEMBERS)
			members->m[members->n++] = m;
		ws(p);
		if (p->i >= p->n)
			return -1;
		if (p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->s[p->i] != close)
			return -1;
		p->i++;
		p->depth--;
		return 0;
	}
}

static int value(struct parser *p, struct jval *v)
{
	if (p->i >= p->n)
		return -1;
	switch (p->s[p->i]) {
	case '"': {
		p->i++;
		long len = string(p, v->str, sizeof v->str);
		if (len < 0)
			return -1;
		v->type = J_STR;
		v->truthy = len > 0;
		return 0;
	}
	case '{':
	case '[':
		return container(p, v, NULL);
	case 'n':
		v->type = J_NULL;
		return lit(p, "null") ? 0 : -1;
	case 't':
		v->type = J_TRUE;
		v->truthy = true;
		return lit(p, "true") ? 0 : -1;
	case 'f':
		v->type = J_FALSE;
		return lit(p, "false") ? 0 : -1;
	case 'N':
		v->type = J_FLOAT;
		v->truthy = true;
		return lit(p, "NaN") ? 0 : -1;
	case 'I':
		v->type = J_FLOAT;
		v->truthy = true;
		return lit(p, "Infinity") ? 0 : -1;
	case '-':
		if (lit(p, "-Infinity")) {
			v->type = J_FLOAT;
			v->truthy = true;
			return 0;
		}
		return number(p, v);
	default:
		return number(p, v);
	}
}

static bool strip_byte(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
}

int json_object(const char *text, size_t n, struct jobj *out)
{
	const unsigned char *s = (const unsigned char *)text;
	while (n && strip_byte(s[0])) {
		s++;
		n--;
	}
	while (n && strip_byte(s[n - 1]))
		n--;
	struct parser p = {s, n, 0, 0};
	struct jval top = {0};
	out->n = 0;
	if (!n || s[0] != '{')
		return -1;
	if (container(&p, &top, out) < 0 || p.i != p.n)
		return -1;
	return 0;
}

const struct jval *json_get(const struct jobj *o, const char *key)
{
	for (int k = o->n - 1; k >= 0; k--)
		if (strcmp(o->m[k].key, key) == 0)
			return &o->m[k];
	return NULL;
}

bool json_truthy(const struct jobj *o, const char *key)
{
	const struct jval *v = json_get(o, key);
	return v && v->truthy;
}
