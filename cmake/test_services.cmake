# Services that tests and examples run against, each started and stopped by a ctest fixture
# (so ./setup.sh test starts and stops them itself):
#   sendgrid_backend_redis      redis-server on 127.0.0.1, data in SENDGRID_BACKEND_REDIS_DIR
#   sendgrid_backend_nginx      nginx, plain HTTP/1.1, in SENDGRID_BACKEND_NGINX_DIR
#   sendgrid_backend_nginx_tls  nginx, HTTP/2 over TLS, in SENDGRID_BACKEND_NGINX_TLS_DIR
# A service whose program is missing is said, and the tests that need it are not added.

find_program(SENDGRID_BACKEND_REDIS_SERVER redis-server)
find_program(SENDGRID_BACKEND_NGINX nginx PATHS /usr/sbin)
find_program(SENDGRID_BACKEND_OPENSSL openssl)
set(support "${PROJECT_SOURCE_DIR}/tests/support")

if(SENDGRID_BACKEND_REDIS_SERVER AND TARGET sendgrid_backend_redis)
    set(SENDGRID_BACKEND_REDIS_DIR "${PROJECT_BINARY_DIR}/services/redis")
    add_test(NAME redis_start COMMAND "${support}/redis.sh" start "${SENDGRID_BACKEND_REDIS_DIR}")
    add_test(NAME redis_stop COMMAND "${support}/redis.sh" stop "${SENDGRID_BACKEND_REDIS_DIR}")
    set_tests_properties(redis_start PROPERTIES FIXTURES_SETUP sendgrid_backend_redis)
    set_tests_properties(redis_stop PROPERTIES FIXTURES_CLEANUP sendgrid_backend_redis)
else()
    message(STATUS "redis-server or hiredis not found: the Redis tests and examples are not "
                   "added (./setup.sh test installs redis-server and libhiredis-dev)")
endif()

if(SENDGRID_BACKEND_NGINX)
    set(SENDGRID_BACKEND_NGINX_DIR "${PROJECT_BINARY_DIR}/services/nginx")
    add_test(NAME nginx_start COMMAND "${support}/nginx.sh" start "${SENDGRID_BACKEND_NGINX_DIR}")
    add_test(NAME nginx_stop COMMAND "${support}/nginx.sh" stop "${SENDGRID_BACKEND_NGINX_DIR}")
    set_tests_properties(nginx_start PROPERTIES FIXTURES_SETUP sendgrid_backend_nginx)
    set_tests_properties(nginx_stop PROPERTIES FIXTURES_CLEANUP sendgrid_backend_nginx)
endif()
if(SENDGRID_BACKEND_NGINX AND SENDGRID_BACKEND_OPENSSL)
    set(SENDGRID_BACKEND_NGINX_TLS_DIR "${PROJECT_BINARY_DIR}/services/nginx-tls")
    add_test(NAME nginx_tls_start
        COMMAND "${support}/nginx.sh" start "${SENDGRID_BACKEND_NGINX_TLS_DIR}" tls)
    add_test(NAME nginx_tls_stop COMMAND "${support}/nginx.sh" stop "${SENDGRID_BACKEND_NGINX_TLS_DIR}")
    set_tests_properties(nginx_tls_start PROPERTIES FIXTURES_SETUP sendgrid_backend_nginx_tls)
    set_tests_properties(nginx_tls_stop PROPERTIES FIXTURES_CLEANUP sendgrid_backend_nginx_tls)
else()
    message(STATUS "nginx or openssl not found: the HTTP/2 over TLS test is not added "
                   "(./setup.sh test installs nginx-light and openssl)")
endif()
