/* What the Python shim's loop hands over with --state-fd: its connections,
 * the bytes it still held for the container's stdin and the log's partial
 * lines. The format is berth/shim/handoff.py's (documented there). A record
 * that cannot be read is said in shim.log and skipped: the rest of the
 * container's monitoring does not depend on it. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor.h"

#define MAX_FIELDS 8

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* "-" or an even number of lowercase hex digits into out */
static int unhex(const char *s, struct buf *out)
{
	if (!strcmp(s, "-"))
		return 0;
	size_t n = strlen(s);
	if (n % 2)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		char b = (char)(hi << 4 | lo);
		buf_add(out, &b, 1);
	}
	return 0;
}

static int record(struct mon *m, char **f, int n)
{
	struct buf a = {0}, b = {0};
	if (!strcmp(f[0], "conn") && n == 7) {
		char *end;
		long fd = strtol(f[1], &end, 10);
		long waits = strtol(f[4], NULL, 10);
		bool attach = !strcmp(f[2], "attach");
		if (*end || fd < 0 || (!attach && strcmp(f[2], "control")) || unhex(f[5], &a) < 0
		    || unhex(f[6], &b) < 0)
			goto bad;
		conn_restore(m, (int)fd, attach ? K_ATTACH : K_CONTROL, f[3], (int)waits, &a, &b);
		return 0;
	}
	if (!strcmp(f[0], "stdin") && n == 2 && unhex(f[1], &a) == 0) {
		to_stdin(m, buf_data(&a), a.len);
		buf_free(&a);
		return 0;
	}
	if (!strcmp(f[0], "stdin-closing") && n == 1) {
		m->stdin_closing = true;
		if (!m->stdin_buf.len)
			close_stdin(m);
		return 0;
	}
	if (!strcmp(f[0], "stdin-closed") && n == 1) {
		close_stdin(m);
		return 0;
	}
	if (!strcmp(f[0], "partial") && n == 3 && unhex(f[2], &a) == 0) {
		int s = !strcmp(f[1], "stdout") ? S_STDOUT : !strcmp(f[1], "stderr") ? S_STDERR : -1;
		if (s < 0)
			goto bad;
		buf_add(&m->log.partial[s], buf_data(&a), a.len);
		buf_free(&a);
		return 0;
	}
bad:
	buf_free(&a);
	buf_free(&b);
	return -1;
}

void handoff_restore(struct mon *m, int fd)
{
	struct buf text = {0};
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		buf_add(&text, chunk, r);
	}
	close(fd);
	buf_add(&text, "", 1);   /* a C string from here on */
	char *line = buf_data(&text), *next;
	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char *f[MAX_FIELDS], *save = NULL;
		int n = 0;
		for (char *t = strtok_r(line, " ", &save); t && n < MAX_FIELDS; t = strtok_r(NULL, " ", &save))
			f[n++] = t;
		if (n && record(m, f, n) < 0)
			say("hand-over: cannot read the record '%.60s'", f[0]);
	}
	buf_free(&text);
}
