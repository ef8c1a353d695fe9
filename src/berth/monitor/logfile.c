/* Docker's json-file log, byte for byte as berth/shim/logs.py writes it:
 * one entry per line of output, a partial line held per stream until its
 * newline or until PARTIAL_MAX bytes, rotation by max-size/max-file before
 * an entry is written (max_files counts every file, LOG.1 the newest). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

#define PARTIAL_MAX (16 * 1024)

static const char *const STREAM_NAMES[2] = {"stdout", "stderr"};

void rfc3339nano(char out[40])
{
	struct timespec ts;
	struct tm t;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &t);
	size_t n = strftime(out, 30, "%Y-%m-%dT%H:%M:%S", &t);
	snprintf(out + n, 40 - n, ".%09uZ", (unsigned)ts.tv_nsec % 1000000000u);
}

static int open_log(const char *path, int extra)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | extra, 0640);
}

int jsonlog_open(struct jsonlog *l, const char *path, long long max_size, int max_files)
{
	memset(l, 0, sizeof *l);
	l->path = strdup(path);
	l->max_size = max_size > 0 ? max_size : 0;
	l->max_files = max_files > 1 ? max_files : 1;
	l->fd = open_log(path, 0);
	if (l->fd < 0)
		return -1;
	struct stat st;
	l->size = fstat(l->fd, &st) == 0 ? st.st_size : 0;
	return 0;
}

static void write_pending(struct jsonlog *l)
{
	if (l->pending.len && l->fd >= 0 && write_all(l->fd, buf_data(&l->pending), l->pending.len) < 0)
		say("log %s: %s", l->path, strerror(errno));
	buf_clear(&l->pending);
}

static void rotate(struct jsonlog *l)
{
	close(l->fd);
	l->fd = -1;
	if (l->max_files > 1) {
		size_t n = strlen(l->path) + 16;
		char *from = xalloc(n), *to = xalloc(n);
		for (int i = l->max_files - 1; i > 1; i--) {
			snprintf(from, n, "%s.%d", l->path, i - 1);
			snprintf(to, n, "%s.%d", l->path, i);
			if (rename(from, to) < 0 && errno != ENOENT)
				say("rotate %s: %s", from, strerror(errno));
		}
		snprintf(to, n, "%s.1", l->path);
		if (rename(l->path, to) < 0)
			say("rotate %s: %s", l->path, strerror(errno));
		free(from);
		free(to);
	}
	l->fd = open_log(l->path, O_TRUNC);
	if (l->fd < 0)
		say("log %s: %s", l->path, strerror(errno));
	l->size = 0;
}

static void emit(struct jsonlog *l, int stream, const char *chunk, size_t n)
{
	struct buf line = {0};
	char when[40];
	buf_adds(&line, "{\"log\":");
	json_str(&line, chunk, n, false);
	rfc3339nano(when);
	buf_addf(&line, ",\"stream\":\"%s\",\"time\":\"%s\"}\n", STREAM_NAMES[stream], when);
	if (l->max_size && l->size >= l->max_size) {
		write_pending(l);
		rotate(l);
	}
	buf_add(&l->pending, buf_data(&line), line.len);
	l->size += line.len;
	buf_free(&line);
}

void jsonlog_write(struct jsonlog *l, int stream, const char *data, size_t n)
{
	struct buf *b = &l->partial[stream];
	buf_add(b, data, n);
	const char *p = buf_data(b);
	size_t start = 0;
	for (;;) {
		const char *nl = memchr(p + start, '\n', b->len - start);
		if (!nl)
			break;
		size_t end = nl - p + 1;
		emit(l, stream, p + start, end - start);
		start = end;
	}
	while (b->len - start >= PARTIAL_MAX) {
		emit(l, stream, p + start, PARTIAL_MAX);
		start += PARTIAL_MAX;
	}
	buf_eat(b, start);
	write_pending(l);
}

void jsonlog_close(struct jsonlog *l)
{
	if (l->fd < 0 && !l->path)
		return;
	for (int s = 0; s < 2; s++) {
		if (l->partial[s].len)
			emit(l, s, buf_data(&l->partial[s]), l->partial[s].len);
		buf_free(&l->partial[s]);
	}
	write_pending(l);
	buf_free(&l->pending);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	free(l->path);
	l->path = NULL;
}
