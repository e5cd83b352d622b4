/* cli_api: the query strings the CLI's list commands send. */
#include <criterion/criterion.h>
#include <string.h>

#include "server/cli/cli.h"
#include "server/cli/cli_args.h"

static const char *const list_flags[] = {"state", "limit", "cursor", NULL};

static enum cli_exit query(int argc, char **argv, char *path, size_t cap)
{
    struct cli_args a;
    cr_assert_eq(cli_args_parse("list", argc, argv, list_flags, NULL, 0, &a), 0);
    return cli_query_path("list", "/api/v1/jobs", &a, list_flags, path, cap);
}

Test(cli_api, query_path_adds_the_given_flags_in_table_order)
{
    char path[128];
    char *none[] = {NULL};
    cr_assert_eq(query(0, none, path, sizeof(path)), CLI_OK);
    cr_assert_str_eq(path, "/api/v1/jobs");
    char *two[] = {"--cursor", "c 1/2", "--state", "running"};
    cr_assert_eq(query(4, two, path, sizeof(path)), CLI_OK);
    cr_assert_str_eq(path, "/api/v1/jobs?state=running&cursor=c%201%2F2");
}

Test(cli_api, query_path_refuses_what_does_not_fit)
{
    char path[24];
    char *big[] = {"--state", "succeeded-and-more"};
    cr_assert_eq(query(2, big, path, sizeof(path)), CLI_USAGE);
    char *fits[] = {"--limit", "5"};
    cr_assert_eq(query(2, fits, path, sizeof(path)), CLI_OK);
    cr_assert_str_eq(path, "/api/v1/jobs?limit=5");
}
