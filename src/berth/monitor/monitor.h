/* berth-monitor: the long-lived part of a container's shim, in C.
 *
 * berth-shim (Python) creates the container with all of berth-runtime's
 * checks, opens the attach and control sockets, reports ready to berthd and
 * then execs this program, handing it the container's stdio, the listeners
 * and the state directory. From then on this process only waits: it copies
 * output to the json-file log and to attach clients, answers the control
 * socket, reaps the init and writes exit.json. The protocols are the Python
 * shim's, described in berth/shim/__init__.py and berth/shim/loop.py; the
 * two must stay interchangeable (tests/engine/test_shim.py runs against
 * both). Nothing here decides anything about the container itself: the
 * runtime's start and delete are asked of the shim zygote (a fork of the
 * Python runtime), or of the runtime binary when there is no zygote. */
#ifndef BERTH_MONITOR_H
#define BERTH_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MONITOR_VERSION "1"

/* ---------------------------------------------------------------- buffers */

struct buf {
	char *p;
	size_t off, len, cap;   /* live bytes are p[off .. off+len) */
};

void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_eat(struct buf *b, size_t n);
void buf_clear(struct buf *b);
void buf_free(struct buf *b);
static inline char *buf_data(const struct buf *b) { return b->p ? b->p + b->off : (char *)""; }

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xalloc(size_t n);
int write_all(int fd, const void *data, size_t n);
int64_t now_ms(void);

/* ---------------------------------------------------------------- json */

enum jtype { J_NONE, J_NULL, J_FALSE, J_TRUE, J_INT, J_FLOAT, J_STR, J_ARRAY, J_OBJECT };

struct jval {
	char key[32];          /* longer keys are kept cut: none we read is */
	enum jtype type;
	long long num;         /* J_INT (saturated) */
	bool truthy;           /* Python's bool() of the value */
	bool big;              /* J_INT outside long long */
	char str[256];         /* J_STR, cut */
};

#define JSON_MAX_MEMBERS 32

struct jobj {
	int n;
	struct jval m[JSON_MAX_MEMBERS];
};

/* The JSON object in text (bytes: invalid UTF-8 read as U+FFFD, as the
 * Python shim does); -1 when it is not exactly one object. */
int json_object(const char *text, size_t n, struct jobj *out);
const struct jval *json_get(const struct jobj *o, const char *key);
bool json_truthy(const struct jobj *o, const char *key);
/* A JSON string of bytes read as UTF-8 with U+FFFD for invalid sequences;
 * ascii: non-ASCII as \uXXXX (Python's encode_basestring_ascii), else
 * written as UTF-8 (encode_basestring). */
void json_str(struct buf *b, const char *s, size_t n, bool ascii);
/* One code point of UTF-8 at s (n > 0 bytes): returns it, or -1 for an
 * invalid sequence of *adv bytes (Python's "maximal subpart" rule). */
long utf8_next(const unsigned char *s, size_t n, size_t *adv);

/* ---------------------------------------------------------------- log */

struct jsonlog {
	char *path;
	long long max_size;
	int max_files;
	int fd;
	long long size;
	struct buf partial[2];   /* stdout, stderr */
	struct buf pending;      /* the entries of one write(), one syscall */
};

int jsonlog_open(struct jsonlog *l, const char *path, long long max_size, int max_files);
void jsonlog_write(struct jsonlog *l, int stream, const char *data, size_t n);
void jsonlog_close(struct jsonlog *l);
/* UTC now with nine fraction digits, as Docker writes log times (31 bytes) */
void rfc3339nano(char out[40]);

/* ---------------------------------------------------------------- runtime */

struct verb_opts {
	const char *runtime;       /* binary */
	const char *root;
	const char *zygote;        /* socket of the shim zygote, or NULL */
};

/* Runs `RUNTIME --root ROOT args...` (in a fork of the zygote if there is
 * one): 0, or -1 with the last line of its stderr in err. */
int run_verb(const struct verb_opts *o, const char *const *args, int timeout_s, struct buf *err);

/* A verb asked of the zygote, its answer not read yet */
struct zcall {
	int sock, err;           /* the request's connection, the verb's stderr */
	long pid;
	struct buf in;
};

void verb_disarm(struct zcall *z);
/* A verb sent to the zygote now, its answer read by verb_finish: 0, or -1
 * when there is no zygote (verb_finish then runs it). For verbs that may
 * run twice (delete -f): without an answer verb_finish execs it again. */
int verb_send(const struct verb_opts *o, const char *const *args, struct zcall *z);
int verb_finish(const struct verb_opts *o, struct zcall *z, const char *const *args,
		int timeout_s, struct buf *err);
void verb_disarm(struct zcall *z);

/* ---------------------------------------------------------------- the loop */

enum stream { S_STDOUT = 0, S_STDERR = 1 };

struct options {
	const char *id, *runtime, *runtime_root, *state_dir, *log_path, *zygote;
	long long log_max_size;
	int log_max_files;
	bool tty, open_stdin, stdin_once, no_start, started;
	pid_t init_pid;
	int fd_stdin, fd_stdout, fd_stderr, fd_master, fd_attach, fd_control, fd_state;
	const char *oom_files[4];
	int n_oom;
	long long oom_before;
};

/* What epoll reports on: every registration's data.ptr is one of these,
 * first member of the struct it belongs to. */
enum src_type { T_OUTPUT, T_STDIN, T_SIGNAL, T_LISTEN, T_CONN };
enum conn_kind { K_ATTACH, K_CONTROL };

struct src {
	enum src_type type;
	int fd;
	int arg;                 /* T_OUTPUT: the stream; T_LISTEN: the kind */
};

struct conn {
	struct src src;
	enum conn_kind kind;
	struct buf in, out;
	bool reading, header, closed;
	bool stdin, want[2];     /* attach: what the client asked for */
	int waits;               /* control: wait requests owed an answer */
	uint32_t mask;
	struct conn *next;
};

struct mon {
	const struct options *o;
	struct verb_opts verb;
	int ep;
	struct src out[2];       /* fd -1 once the stream has ended */
	struct src stdin_src, sig, listen[2];
	int master;              /* the pty, or -1 */
	struct jsonlog log;
	struct conn *conns;
	bool exited, done, started;
	int exit_code;
	bool oom_killed;
	char finished_at[40];
	struct buf stdin_buf;
	bool stdin_closing, stdin_closed;
	uint32_t stdin_mask;
	struct zcall del;        /* its delete, asked for as soon as the init is reaped */
	bool del_sent;
};

/* loop.c */
int monitor_run(const struct options *o);
void to_stdin(struct mon *m, const char *data, size_t n);
void close_stdin(struct mon *m);
void exit_json(struct mon *m, struct buf *b);
long long oom_kills(const char *const *files, int n);

/* conn.c */
void conn_accept(struct mon *m, struct src *l);
void conn_event(struct mon *m, struct conn *c, uint32_t ev);
void conn_send(struct mon *m, struct conn *c, const void *data, size_t n);
void conn_rearm(struct mon *m, struct conn *c);
void conn_close(struct mon *m, struct conn *c);
void conn_free_closed(struct mon *m);
void conns_rearm(struct mon *m);
void conns_answer_waiters(struct mon *m);
void conns_last_round(struct mon *m);
void conn_restore(struct mon *m, int fd, enum conn_kind kind, const char *flags, int waits,
		  struct buf *in, struct buf *out);

/* handoff.c */
void handoff_restore(struct mon *m, int fd);

#endif
