# Debian package (CPack DEB generator): scripts/build-deb.sh, README.md here.
#
# Layout (CMAKE_INSTALL_PREFIX=/usr for the package):
#   /usr/bin/mxrelay                        the binary (stripped)
#   /lib/systemd/system/mxrelay.service     deploy/systemd/mxrelay.service with
#                                           /usr/bin paths, StateDirectoryMode 0700
#                                           and an ExecCondition (see below)
#   /etc/mxrelay/mxrelay.toml               conffile, every key commented
#   /usr/share/mxrelay/{grafana,prometheus} dashboard, rules, scrape example
#   /usr/share/doc/mxrelay/                 README, docs/*.md, copyright, changelog
#   /usr/share/man/man8/mxrelay.8.gz
# The user, /var/lib/mxrelay and the unit's state are handled by the
# maintainer scripts in this folder (postinst, prerm, postrm).

set(MXRELAY_DEB_RELEASE "1" CACHE STRING "Debian revision of the package (the N in 0.1.0-N)")
set(MXRELAY_DEB_MAINTAINER "mxrelay developers <mxrelay@example.org>" CACHE STRING "Maintainer field of the package")
set(_deb "${CMAKE_SOURCE_DIR}/packaging/deb")
set(_gen "${CMAKE_BINARY_DIR}/packaging/deb")
file(MAKE_DIRECTORY "${_gen}/control")

# The packaged unit is derived from the one deploy/systemd/README.md installs
# by hand, so the two cannot drift apart.
file(READ "${CMAKE_SOURCE_DIR}/deploy/systemd/mxrelay.service" _unit)
string(REPLACE "/usr/local/" "/usr/" _unit "${_unit}")
string(REPLACE "# Install steps: deploy/systemd/README.md."
  "# Installed by the mxrelay Debian package (packaging/deb/README.md)." _unit "${_unit}")
# "Started only when configured": the shipped conffile has every key
# commented out; until the operator sets data_dir the start is skipped
# (ExecCondition exit 1: the unit is not started, and not marked failed).
string(REPLACE "ExecStartPre="
  "# Skipped (not failed) until /etc/mxrelay/mxrelay.toml sets data_dir: the\n# packaged file has every key commented out.\nExecCondition=/bin/grep -Eq \"^[[:space:]]*data_dir[[:space:]]*=\" /etc/mxrelay/mxrelay.toml\nExecStartPre="
  _unit "${_unit}")
string(FIND "${_unit}" "ExecCondition=" _has_condition)
if(_has_condition EQUAL -1)
  message(FATAL_ERROR "packaging/deb: deploy/systemd/mxrelay.service has no ExecStartPre= to put ExecCondition= before")
endif()
file(WRITE "${_gen}/mxrelay.service" "${_unit}")

# Debian changelog for this build (lintian wants one; the version must match).
set(_version "${PROJECT_VERSION}-${MXRELAY_DEB_RELEASE}")
execute_process(COMMAND git -C "${CMAKE_SOURCE_DIR}" log -1 --format=%cD
  OUTPUT_VARIABLE _date OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _git_rc ERROR_QUIET)
if(NOT _git_rc EQUAL 0 OR _date STREQUAL "")
  string(TIMESTAMP _date "%a, %d %b %Y %H:%M:%S +0000" UTC)
endif()
file(WRITE "${_gen}/changelog.Debian"
  "mxrelay (${_version}) unstable; urgency=medium\n\n"
  "  * Built from the mxrelay source tree with scripts/build-deb.sh.\n\n"
  " -- ${MXRELAY_DEB_MAINTAINER}  ${_date}\n")
execute_process(COMMAND gzip -9nf "${_gen}/changelog.Debian" RESULT_VARIABLE _gz_rc)
if(NOT _gz_rc EQUAL 0)
  message(FATAL_ERROR "packaging/deb: gzip failed")
endif()

configure_file("${_deb}/mxrelay.8" "${_gen}/mxrelay.8" COPYONLY)
execute_process(COMMAND gzip -9nf "${_gen}/mxrelay.8" RESULT_VARIABLE _gz_rc)
if(NOT _gz_rc EQUAL 0)
  message(FATAL_ERROR "packaging/deb: gzip failed")
endif()

foreach(_script postinst prerm postrm conffiles)
  configure_file("${_deb}/${_script}" "${_gen}/control/${_script}" COPYONLY)
endforeach()

install(FILES "${_gen}/mxrelay.service" DESTINATION /lib/systemd/system)
install(FILES "${_deb}/mxrelay.toml" DESTINATION /etc/mxrelay)
install(FILES "${_gen}/mxrelay.8.gz" DESTINATION share/man/man8)
install(FILES "${_deb}/lintian-overrides" DESTINATION share/lintian/overrides RENAME mxrelay)
install(FILES "${CMAKE_SOURCE_DIR}/deploy/grafana/mxrelay-dashboard.json"
  DESTINATION share/mxrelay/grafana)
install(FILES
  "${CMAKE_SOURCE_DIR}/deploy/prometheus/alerts.yml"
  "${CMAKE_SOURCE_DIR}/deploy/prometheus/alerts_test.yml"
  "${CMAKE_SOURCE_DIR}/deploy/prometheus/prometheus.yml"
  DESTINATION share/mxrelay/prometheus)
file(GLOB _docs "${CMAKE_SOURCE_DIR}/docs/*.md")
install(FILES "${CMAKE_SOURCE_DIR}/README.md" ${_docs} "${_deb}/copyright" "${_gen}/changelog.Debian.gz"
  DESTINATION share/doc/mxrelay)

# `cpack` must not build every test and benchmark first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "mxrelay")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
  OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(CPACK_PACKAGE_CONTACT "${MXRELAY_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${MXRELAY_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${MXRELAY_DEB_RELEASE}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "mail")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "high-throughput durable SMTP relay")
# CPack prepends the summary and formats this (leading space, " ." for the
# empty line).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "mxrelay is an SMTP relay (smarthost) for bulk and transactional sending,
built on io_uring and RocksDB. Applications submit mail over authenticated
SMTP; every message is stored durably before it is acknowledged, then
delivered by MX lookup or through configured routes, with retries and
bounces. It exports Prometheus metrics; a Grafana dashboard and alert rules
are included.

The service is enabled but starts only once /etc/mxrelay/mxrelay.toml sets
data_dir.")
# Library dependencies: computed by dpkg-shlibdeps. Listed by hand only what
# the maintainer scripts run (adduser; deb-systemd-helper/-invoke).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, init-system-helpers (>= 1.52)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${_gen}/control/postinst;${_gen}/control/prerm;${_gen}/control/postrm;${_gen}/control/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
