set(SENDGRID_BACKEND_VERSION_HEADER
    "${CMAKE_CURRENT_LIST_DIR}/../include/sendgrid_backend/version.hpp")

# Reads the version from include/sendgrid_backend/version.hpp, the single place it is written.
function(sendgrid_backend_read_version out_var)
    # A new version in the header configures the build again (the package files carry it).
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                 "${SENDGRID_BACKEND_VERSION_HEADER}")
    file(READ "${SENDGRID_BACKEND_VERSION_HEADER}" header)
    foreach(part MAJOR MINOR PATCH)
        if(NOT header MATCHES "#define SENDGRID_BACKEND_VERSION_${part} ([0-9]+)")
            message(FATAL_ERROR "version.hpp has no SENDGRID_BACKEND_VERSION_${part}")
        endif()
        set(${part} "${CMAKE_MATCH_1}")
    endforeach()
    set(${out_var} "${MAJOR}.${MINOR}.${PATCH}" PARENT_SCOPE)
endfunction()
