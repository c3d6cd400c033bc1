/* claret-sandbox-exec: the sandbox runtime's two steps around bwrap, in one small static program
 * (services/jobs/runtimes/sandbox.py runs it; scripts/install builds it into the venv's bin folder).
 *
 *   claret-sandbox-exec join FILE... -- PROGRAM ARG...
 *       Outside the sandbox: write this process's pid to each FILE (the operator's control groups'
 *       cgroup.procs), then exec PROGRAM (bwrap), so that everything bwrap starts is in those groups.
 *
 *   claret-sandbox-exec drop UID GID NAME=VALUE... -- PROGRAM ARG...
 *       Inside a privileged sandbox, as root with only CAP_SETUID and CAP_SETGID: no supplementary
 *       groups, GID and UID as real, effective and saved ids (never 0), no inheritable or ambient
 *       capability, no_new_privs; then exactly the NAME=VALUE environment, and exec PROGRAM, searched
 *       in that environment's PATH.
 *
 * It replaces `sh` (join), `setpriv` and `env -i` (drop): one exec instead of three, about 4 ms less per
 * operator (docs/performance.md). Static, so that no loader or library runs in the root process, and no
 * variable of the operator's reaches it before the drop. Exit codes as env's: 125 when a step fails,
 * 126 when PROGRAM cannot run, 127 when it is not found.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

enum { FAILED = 125, CANNOT_RUN = 126, NOT_FOUND = 127 };

static int failed(const char *step) {
    fprintf(stderr, "claret-sandbox-exec: %s: %s\n", step, strerror(errno));
    return FAILED;
}

static int usage(void) {
    fputs("usage: claret-sandbox-exec join FILE... -- PROGRAM [ARG...]\n"
          "       claret-sandbox-exec drop UID GID [NAME=VALUE...] -- PROGRAM [ARG...]\n",
          stderr);
    return FAILED;
}

static int run(char **command) {
    execvp(command[0], command);
    int code = errno == ENOENT ? NOT_FOUND : CANNOT_RUN;
    fprintf(stderr, "claret-sandbox-exec: %s: %s\n", command[0], strerror(errno));
    return code;
}

static int join(char **files, char **command) {
    char pid[24];
    int length = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    for (; *files != NULL; files++) {
        int fd = open(*files, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, pid, (size_t)length) != length) {
            return failed(*files);
        }
        close(fd);
    }
    return run(command);
}

/* A uid or gid in decimal (both are unsigned int on Linux), neither 0 (root) nor -1 (which the set*id
 * calls read as "unchanged"). */
static int parse_id(const char *text, unsigned *id) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value == 0 || value >= 0xFFFFFFFFul) {
        return -1;
    }
    *id = (unsigned)value;
    return 0;
}

static int drop(const char *uid_text, const char *gid_text, char **variables, char **command) {
    unsigned uid, gid;
    if (parse_id(uid_text, &uid) != 0 || parse_id(gid_text, &gid) != 0) {
        fprintf(stderr, "claret-sandbox-exec: uid %s, gid %s: not ids an operator may run as\n", uid_text, gid_text);
        return FAILED;
    }
    if (setgroups(0, NULL) != 0) return failed("setgroups");
    if (setresgid(gid, gid, gid) != 0) return failed("setresgid");
    if (setresuid(uid, uid, uid) != 0) return failed("setresuid");  /* clears the permitted and effective sets */
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct sets[2];
    if (syscall(SYS_capget, &header, sets) != 0) return failed("capget");
    sets[0].inheritable = sets[1].inheritable = 0;
    if (syscall(SYS_capset, &header, sets) != 0) return failed("capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return failed("clearing ambient capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed("no_new_privs");
    uid_t real, effective, saved;
    gid_t real_group, effective_group, saved_group;
    if (getresuid(&real, &effective, &saved) != 0 || real != uid || effective != uid || saved != uid ||
        getresgid(&real_group, &effective_group, &saved_group) != 0 || real_group != gid ||
        effective_group != gid || saved_group != gid) {
        fputs("claret-sandbox-exec: the uid or gid did not change\n", stderr);
        return FAILED;
    }
    for (char **variable = variables; *variable != NULL; variable++) {
        if (strchr(*variable, '=') == NULL || **variable == '=') {
            fprintf(stderr, "claret-sandbox-exec: %s: not NAME=VALUE\n", *variable);
            return FAILED;
        }
    }
    environ = variables;
    return run(command);
}

int main(int argc, char **argv) {
    int separator = 2;
    while (separator < argc && strcmp(argv[separator], "--") != 0) separator++;
    if (argc < 2 || separator + 1 >= argc) return usage();
    argv[separator] = NULL; /* ends the list of files or variables */
    char **command = argv + separator + 1;
    if (strcmp(argv[1], "join") == 0) return join(argv + 2, command);
    if (strcmp(argv[1], "drop") == 0 && separator >= 4) return drop(argv[2], argv[3], argv + 4, command);
    return usage();
}
