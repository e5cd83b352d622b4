/*
 * The dashboard's static file names: which may be served, with which media
 * type, and where they are read from. A NULL type is a 404, and is what
 * keeps every request inside the web directory.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/http.h"
#include "server/web_static.h"

Test(srv_web, types_by_extension)
{
    cr_assert_str_eq(srv_web_type("app-AB12CD34.js"), "text/javascript; charset=utf-8");
    cr_assert_str_eq(srv_web_type("app-AB12CD34.css"), "text/css; charset=utf-8");
    cr_assert_str_eq(srv_web_type("index.html"), "text/html; charset=utf-8");
    cr_assert_str_eq(srv_web_type("logo.svg"), "image/svg+xml");
    cr_assert_str_eq(srv_web_type("shot_1.png"), "image/png");
    cr_assert_str_eq(srv_web_type("app.js.map"), "application/json");
}

Test(srv_web, refuses_names_that_could_leave_the_directory_or_are_unknown)
{
    static const char *const bad[] = {
        "",
        ".js",
        "..",
        "../x.js",
        "..%2fx.js",
        "a/b.js",
        "a\\b.js",
        ".hidden.js",
        "-x.js",
        "_x.js",
        "x..js",
        "app.exe",
        "app.JS",
        "app.js.bak",
        "js",
        "app js.js",
        "app%20.js",
        "ap\x01p.js",
        "a.js\xc3\xa9",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.js",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_null(srv_web_type(bad[i]), "'%s' was accepted", bad[i]);
    /* 64 characters is the longest name. */
    char name[65];
    memset(name, 'a', 61);
    memcpy(name + 61, ".js", 4);
    cr_assert_not_null(srv_web_type(name));
}

Test(srv_web, paths_under_the_web_directory)
{
    char out[64];
    cr_assert_eq(srv_web_path("/srv/web", NULL, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "/srv/web/index.html");
    cr_assert_eq(srv_web_path("/srv/web", "app-1.js", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "/srv/web/ui/app-1.js");
    cr_assert_eq(srv_web_path("/srv/web", "a-very-long-name-that-does-not-fit-here.js", out, 32),
                 -1);
}

Test(srv_web, knows_which_routes_the_server_has)
{
    cr_assert_eq(srv_http_has_route("GET", "/api/v1/jobs"), 1);
    cr_assert_eq(srv_http_has_route("GET", "/"), 1);
    cr_assert_eq(srv_http_has_route("POST", "/"), 0);
    cr_assert_eq(srv_http_has_route("GET", "/api/v1/no-such-route"), 0);
}
