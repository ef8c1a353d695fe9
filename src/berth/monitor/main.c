/* berth-monitor's argv. berth-shim execs it once the container is created
 * (berth/shim/handoff.py builds this command line):
 *
 * berth-monitor --id ID --runtime BIN --runtime-root DIR --state-dir DIR
 *               --log-path FILE [--log-max-size BYTES] [--log-max-files N]
 *               [--tty] [--open-stdin] [--stdin-once] [--no-start | --started]
 *               --init-pid PID --attach-fd FD --control-fd FD
 *               (--master-fd FD | --stdout-fd FD --stderr-fd FD [--stdin-fd FD])
 *               [--state-fd FD] [--zygote SOCK] [--oom-file PATH]... [--oom-before N]
 * berth-monitor --version
 *
 * The fds are the ones berth-shim held: the container's stdio ends (or the
 * pty master), the attach and control listeners, and --state-fd what its
 * loop knew (handoff.py). --started: the container runs already (a start
 * request is then refused); --no-start: a start request runs the
 * runtime's start. --oom-file names the memory cgroup's kill counters and
 * --oom-before their sum at create, so OOMKilled is the counter having
 * grown when the init dies. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "monitor.h"

static void usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "berth-monitor: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(2);
}

static long long number(const char *name, const char *value, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(value, &end, 10);
	if (errno || end == value || *end || v < lo || v > hi) {
		fprintf(stderr, "berth-monitor: --%s: not a number in %lld..%lld: '%s'\n", name, lo, hi,
			value);
		exit(2);
	}
	return v;
}

static int fd_arg(const char *name, const char *value)
{
	int fd = (int)number(name, value, 0, INT_MAX);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "berth-monitor: --%s %d: %s\n", name, fd, strerror(errno));
		exit(2);
	}
	return fd;
}

static void parse(int argc, char **argv, struct options *o)
{
	*o = (struct options){.log_max_files = 1, .fd_stdin = -1, .fd_stdout = -1, .fd_stderr = -1,
			      .fd_master = -1, .fd_attach = -1, .fd_control = -1, .fd_state = -1};
	long long init_pid = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0)
			usage_error("unexpected argument '%s'", a);
		const char *name = a + 2;
		if (!strcmp(name, "tty")) { o->tty = true; continue; }
		if (!strcmp(name, "open-stdin")) { o->open_stdin = true; continue; }
		if (!strcmp(name, "stdin-once")) { o->stdin_once = true; continue; }
		if (!strcmp(name, "no-start")) { o->no_start = true; continue; }
		if (!strcmp(name, "started")) { o->started = true; continue; }
		if (i + 1 >= argc)
			usage_error("--%s needs a value", name);
		const char *v = argv[++i];
		if (!strcmp(name, "id")) o->id = v;
		else if (!strcmp(name, "runtime")) o->runtime = v;
		else if (!strcmp(name, "runtime-root")) o->runtime_root = v;
		else if (!strcmp(name, "state-dir")) o->state_dir = v;
		else if (!strcmp(name, "log-path")) o->log_path = v;
		else if (!strcmp(name, "zygote")) o->zygote = *v ? v : NULL;
		else if (!strcmp(name, "log-max-size")) o->log_max_size = number(name, v, 0, LLONG_MAX);
		else if (!strcmp(name, "log-max-files")) o->log_max_files = (int)number(name, v, 1, 1 << 20);
		else if (!strcmp(name, "init-pid")) init_pid = number(name, v, 1, INT_MAX);
		else if (!strcmp(name, "oom-before")) o->oom_before = number(name, v, 0, LLONG_MAX);
		else if (!strcmp(name, "stdin-fd")) o->fd_stdin = fd_arg(name, v);
		else if (!strcmp(name, "stdout-fd")) o->fd_stdout = fd_arg(name, v);
		else if (!strcmp(name, "stderr-fd")) o->fd_stderr = fd_arg(name, v);
		else if (!strcmp(name, "master-fd")) o->fd_master = fd_arg(name, v);
		else if (!strcmp(name, "attach-fd")) o->fd_attach = fd_arg(name, v);
		else if (!strcmp(name, "control-fd")) o->fd_control = fd_arg(name, v);
		else if (!strcmp(name, "state-fd")) o->fd_state = fd_arg(name, v);
		else if (!strcmp(name, "oom-file")) {
			if (o->n_oom >= (int)(sizeof o->oom_files / sizeof o->oom_files[0]))
				usage_error("too many --oom-file (at most 4), at '%s'", v);
			o->oom_files[o->n_oom++] = v;
		} else {
			usage_error("unknown option %s", a);
		}
	}
	o->init_pid = (pid_t)init_pid;
	const char *missing = !o->id ? "--id" : !o->runtime ? "--runtime"
			      : !o->runtime_root ? "--runtime-root" : !o->state_dir ? "--state-dir"
			      : !o->log_path ? "--log-path" : !o->init_pid ? "--init-pid"
			      : o->fd_attach < 0 ? "--attach-fd" : o->fd_control < 0 ? "--control-fd"
			      : o->tty && o->fd_master < 0 ? "--master-fd (with --tty)"
			      : !o->tty && o->fd_stdout < 0 ? "--stdout-fd"
			      : !o->tty && o->fd_stderr < 0 ? "--stderr-fd" : NULL;
	if (missing)
		usage_error("missing %s", missing);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("berth-monitor %s\n", MONITOR_VERSION);
		return 0;
	}
	struct options o;
	parse(argc, argv, &o);
	/* berth-shim made this process the container's subreaper, session
	 * leader and owner of shim.pid; exec kept all three */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (chdir(o.state_dir) < 0)
		usage_error("--state-dir %s: cannot enter it", o.state_dir);
	return monitor_run(&o);
}
