// The apsched dashboard: plain JavaScript, no build step, no dependencies. Everything it shows and does goes
// through the public REST API (../v1/...), so it can do nothing a script could not.
'use strict';
(function () {
  // The API relative to /ui/, so the page also works when apsched is mounted under a prefix.
  const API = '../v1';
  const TOKEN_KEY = 'apsched.token';
  // Lists go stale while open: refresh at a pace that shows a fire soon after it happens without load.
  const REFRESH_MS = 5000;
  // Wait for a pause in typing before asking the server for a preview.
  const PREVIEW_DEBOUNCE_MS = 250;
  const PREVIEW_COUNT = 10;
  // One page of jobs; "load more" follows the cursor.
  const JOB_PAGE = 200;
  const RUN_PAGE = 50;
  const HISTORY_PAGE = 50;
  // How long a notice stays up.
  const FLASH_MS = 6000;
  // What the API shows instead of a secret header value (docs/security.md); saving it back would store the mask.
  const MASK = '********';

  const CRON_FIELDS = ['year', 'month', 'day', 'week', 'day_of_week', 'hour', 'minute', 'second'];
  const INTERVAL_FIELDS = ['weeks', 'days', 'hours', 'minutes', 'seconds'];
  const CALENDAR_FIELDS = ['years', 'months', 'weeks', 'days', 'hour', 'minute', 'second'];

  const main = document.getElementById('main');
  let scheduler = null;
  let refreshTimer = null;
  // Bumped on every navigation and every new refresh loop: a late answer for a page left behind is dropped.
  let pageSeq = 0;
  let refreshSeq = 0;
  // jobTab: which of a job's tabs is shown (runs, history or notifications); kept while the page refreshes.
  const view = { filter: '', state: 'all', selector: '', jobTab: 'runs' };

  // ---- the API --------------------------------------------------------------------------------------------

  class Problem extends Error {
    constructor(status, body) {
      const detail = (body && (body.detail || body.title)) || 'HTTP ' + status;
      super(detail);
      this.status = status;
      this.field = body && body.field;
      this.detail = detail;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new Problem(0, { detail: 'cannot reach the server: ' + err.message });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new Problem(response.status, data || { detail: text || response.statusText });
    return data;
  }

  const enc = encodeURIComponent;

  // ---- small DOM helpers (text is always set as text: job names and errors are untrusted) -----------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (key === 'value') el.value = value;
      else el.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  // Replace the page; children may be nested lists with gaps (null) where a part does not apply.
  function setMain(...children) {
    main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  }

  function flash(message, bad) {
    const box = document.getElementById('flash');
    box.textContent = message;
    box.className = bad ? 'bad' : '';
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, FLASH_MS);
  }

  function showError(err) {
    setMain(h('h1', {}, 'Error'), h('p', { class: 'form-error' }, 'error: ' + err.message),
      err.status === 401 || err.status === 403
        ? h('p', {}, 'The server wants an API token: enter it under "API token" above.') : null);
  }

  // ---- words and times ------------------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');
  const plural = (n, unit) => n + ' ' + unit + (Number(n) === 1 ? '' : 's');
  const MONTHS = ['', 'jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
  // APScheduler numbers weekdays from Monday = 0; a crontab from Sunday = 0 (and 7).
  const WEEKDAYS_APS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  const WEEKDAYS_CRONTAB = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  const CRONTAB_ALIASES = {
    '@yearly': 'every year on 1 jan at 00:00', '@annually': 'every year on 1 jan at 00:00',
    '@monthly': 'every month on day 1 at 00:00', '@weekly': 'every week on sun at 00:00',
    '@daily': 'every day at 00:00', '@midnight': 'every day at 00:00', '@hourly': 'every hour at minute 0',
  };

  const isAll = (v) => v === undefined || v === null || String(v) === '*' || String(v) === '?';
  const isNumber = (v) => /^\d+$/.test(String(v));
  const names = (expr, table) => String(expr).replace(/\d+/g, (n) => table[Number(n)] || n);

  function describeCron(t) {
    let f;
    if (t.crontab) {
      const text = t.crontab.trim().toLowerCase();
      if (CRONTAB_ALIASES[text]) return CRONTAB_ALIASES[text];
      const p = text.split(/\s+/);
      if (p.length !== 5) return 'crontab ' + t.crontab;
      f = { second: '0', minute: p[0], hour: p[1], day: p[2], month: p[3], day_of_week: p[4], weekdays: WEEKDAYS_CRONTAB };
    } else {
      f = { weekdays: WEEKDAYS_APS };
      // APScheduler: fields finer than the finest one given default to their minimum, coarser ones to '*'.
      const finest = Math.max(...CRON_FIELDS.map((name, i) => (t[name] !== undefined && t[name] !== null ? i : -1)));
      CRON_FIELDS.forEach((name, i) => {
        if (t[name] !== undefined && t[name] !== null) f[name] = String(t[name]);
        else if (i > finest && name !== 'week' && name !== 'day_of_week') f[name] = name === 'day' || name === 'month' ? '1' : '0';
        else f[name] = '*';
      });
    }
    const { second, minute, hour } = f;
    let time;
    const step = (v) => (String(v).match(/^\*\/(\d+)$/) || [])[1];
    if (isNumber(hour) && isNumber(minute) && isNumber(second)) {
      time = 'at ' + pad(hour) + ':' + pad(minute) + (Number(second) ? ':' + pad(second) : '');
    } else if (isAll(hour) && isAll(minute) && isAll(second)) {
      time = 'every second';
    } else if (isAll(hour) && isAll(minute) && step(second)) {
      time = 'every ' + plural(step(second), 'second');
    } else if (isAll(hour) && step(minute) && isNumber(second)) {
      time = 'every ' + plural(step(minute), 'minute');
    } else if (isAll(hour) && isAll(minute) && isNumber(second)) {
      time = 'every minute';
    } else if (isAll(hour) && isNumber(minute) && isNumber(second)) {
      time = 'every hour at minute ' + minute;
    } else if (step(hour) && isNumber(minute) && isNumber(second)) {
      time = 'every ' + plural(step(hour), 'hour') + ' at minute ' + minute;
    } else if (step(minute) && isNumber(second)) {
      time = 'every ' + plural(step(minute), 'minute') + ', hours ' + hour;
    } else {
      time = ['hour ' + hour, 'minute ' + minute, isNumber(second) && Number(second) === 0 ? null : 'second ' + second]
        .filter(Boolean).join(', ');
    }
    const parts = [time];
    if (!isAll(f.day_of_week)) parts.push('on ' + names(f.day_of_week, f.weekdays));
    if (!isAll(f.day)) parts.push('on day ' + f.day);
    if (!isAll(f.week)) parts.push('in ISO week ' + f.week);
    if (!isAll(f.month)) parts.push('in ' + names(f.month, MONTHS));
    if (!isAll(f.year)) parts.push('in ' + f.year);
    return parts.join(', ');
  }

  function describeTrigger(t) {
    if (!t) return '';
    const except = t.exclude_calendars && t.exclude_calendars.length ? ', except ' + t.exclude_calendars.join(', ') : '';
    let words;
    switch (t.type) {
      case 'date':
        return 'once at ' + t.run_date + except;
      case 'interval':
        words = 'every ' + (INTERVAL_FIELDS.filter((k) => t[k]).map((k) => plural(t[k], k.slice(0, -1))).join(' ') || '?');
        break;
      case 'calendarinterval':
        words = 'every ' + ['years', 'months', 'weeks', 'days'].filter((k) => t[k]).map((k) => plural(t[k], k.slice(0, -1))).join(' ')
          + ' at ' + pad(t.hour || 0) + ':' + pad(t.minute || 0) + (t.second ? ':' + pad(t.second) : '');
        break;
      case 'cron':
        words = describeCron(t);
        break;
      case 'and':
        words = 'when all of: ' + t.triggers.map(describeTrigger).join('; ');
        break;
      case 'or':
        words = 'at each of: ' + t.triggers.map(describeTrigger).join('; ');
        break;
      default:
        return String(t.type);
    }
    if (t.end_date) words += ', until ' + t.end_date;
    return (t.timezone ? words + ' (' + t.timezone + ')' : words) + except;
  }

  // Every calendar a trigger or any of its children names, each once.
  function triggerCalendars(t, found) {
    found = found || [];
    if (!t) return found;
    for (const id of t.exclude_calendars || []) if (!found.includes(id)) found.push(id);
    for (const child of t.triggers || []) triggerCalendars(child, found);
    return found;
  }

  const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

  function formatTime(iso, timeZone) {
    const options = {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
      hourCycle: 'h23', timeZoneName: 'short',
    };
    if (timeZone) options.timeZone = timeZone;
    try {
      // Swedish dates read as ISO (2026-11-25 10:35:00), whatever the viewer's language.
      return new Intl.DateTimeFormat('sv-SE', options).format(new Date(iso));
    } catch (_) {
      return iso;
    }
  }

  function relative(iso) {
    const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    const a = Math.abs(seconds);
    const text = a < 60 ? a + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h'
      : Math.round(a / 86400) + ' d';
    return seconds >= 0 ? 'in ' + text : text + ' ago';
  }

  const jobZone = (job) => (job.trigger && job.trigger.timezone) || (scheduler && scheduler.timezone) || 'UTC';

  // A time in the viewer's zone, with the job's zone beneath when it differs.
  function timeCell(iso, zone) {
    if (!iso) return h('span', { class: 'sub' }, '—');
    return h('span', { title: iso },
      h('span', { class: 'local-time' }, formatTime(iso)), ' ', h('span', { class: 'sub' }, relative(iso)),
      zone && zone !== viewerZone ? [h('br'), h('span', { class: 'sub job-time' }, formatTime(iso, zone) + ' · ' + zone)] : null);
  }

  const stateBadge = (text, extra) => h('span', { class: 'state state-' + text + (extra ? ' ' + extra : '') }, text);
  // A job's health (healthy, failing, stale, unknown) as a badge.
  const healthBadge = (job) => job.health ? stateBadge(job.health.state, 'health') : null;

  // ---- navigation -----------------------------------------------------------------------------------------

  function stopRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = null;
    refreshSeq++;
  }

  // Call fn every REFRESH_MS while this page is shown; fn may itself start a new loop, which ends this one.
  function every(fn) {
    stopRefresh();
    const mine = refreshSeq;
    const tick = async () => {
      if (!document.hidden) {
        try {
          await fn();
        } catch (_) { /* the next tick retries; the page keeps what it showed */ }
      }
      if (mine === refreshSeq) refreshTimer = setTimeout(tick, REFRESH_MS);
    };
    refreshTimer = setTimeout(tick, REFRESH_MS);
  }

  async function loadScheduler() {
    scheduler = await api('GET', '/scheduler');
    const badge = document.getElementById('scheduler-badge');
    badge.textContent = scheduler.state === 'running' ? '' : scheduler.state;
    badge.className = 'badge state state-' + scheduler.state;
    return scheduler;
  }

  async function route() {
    stopRefresh();
    pageSeq++;
    const parts = (location.hash || '#/jobs').replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    for (const link of document.querySelectorAll('nav a')) {
      link.classList.toggle('current', link.dataset.nav === (parts[0] === 'edit' ? 'new' : parts[0] || 'jobs'));
    }
    try {
      if (!scheduler) await loadScheduler();
      if (parts[0] === 'jobs' && parts[1]) await showJob(parts[1]);
      else if (parts[0] === 'new') await showForm(null);
      else if (parts[0] === 'edit' && parts[1]) await showForm(parts[1]);
      else if (parts[0] === 'scheduler') await showScheduler();
      else if (parts[0] === 'calendars') await showCalendars(parts[1] || null);
      else await showJobs();
    } catch (err) {
      showError(err);
    }
  }

  // Run an action from a button, then tell what happened and refresh the view.
  async function act(button, work, done) {
    button.disabled = true;
    try {
      const message = work ? await work() : null;
      if (message) flash(message);
      if (done) await done();
    } catch (err) {
      flash('error: ' + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function jobActions(job, after) {
    const id = job.id;
    return [
      job.paused
        ? h('button', { 'data-action': 'resume', onclick: (e) => act(e.target, async () => { await api('POST', '/jobs/' + enc(id) + '/resume'); return 'Resumed ' + id; }, after) }, 'Resume')
        : h('button', { 'data-action': 'pause', onclick: (e) => act(e.target, async () => { await api('POST', '/jobs/' + enc(id) + '/pause'); return 'Paused ' + id; }, after) }, 'Pause'),
      h('button', { 'data-action': 'run', onclick: (e) => act(e.target, async () => { await api('POST', '/jobs/' + enc(id) + '/run'); return 'Started a run of ' + id; }, after) }, 'Run now'),
      h('button', {
        'data-action': 'remove', class: 'danger',
        onclick: (e) => {
          if (!confirm('Remove job ' + id + '? Its run history stays.')) return;
          act(e.target, async () => { await api('DELETE', '/jobs/' + enc(id)); return 'Removed ' + id; },
            () => (location.hash.startsWith('#/jobs/') ? (location.hash = '#/jobs') : after()));
        },
      }, 'Remove'),
    ];
  }

  // ---- the job list ---------------------------------------------------------------------------------------

  async function fetchJobs(cursor) {
    // The label filter is a selector the server applies, so it covers every job, not only the loaded pages.
    const query = '?limit=' + JOB_PAGE + (cursor ? '&cursor=' + enc(cursor) : '')
      + (view.selector.trim() ? '&selector=' + enc(view.selector.trim()) : '');
    const page = await api('GET', '/jobs' + query);
    const outcomes = await Promise.all(page.jobs.map((job) =>
      api('GET', '/jobs/' + enc(job.id) + '/runs?limit=1').then((r) => r.runs[0] || null, () => null)));
    page.jobs.forEach((job, i) => { job.last_run = outcomes[i]; });
    return page;
  }

  async function showJobs() {
    const seq = pageSeq;
    let jobs = [];
    let nextCursor = null;
    const tbody = h('tbody');
    const count = h('span', { class: 'sub', id: 'job-count' });
    const more = h('button', { id: 'more', hidden: true, onclick: async () => {
      const page = await fetchJobs(nextCursor);
      jobs = jobs.concat(page.jobs);
      nextCursor = page.next_cursor;
      render();
    } }, 'Load more');

    const matches = (job) => {
      if (view.state === 'paused' && !job.paused) return false;
      if (view.state === 'active' && job.paused) return false;
      if (view.state === 'failing' && !(job.health && job.health.state === 'failing')) return false;
      const text = [job.id, job.name, describeTrigger(job.trigger), job.paused ? 'paused' : 'active',
        job.last_run && job.last_run.status, job.action.url, labelText(job.labels)].join(' ').toLowerCase();
      return text.includes(view.filter.trim().toLowerCase());
    };

    function row(job) {
      const run = job.last_run;
      return h('tr', { 'data-job-id': job.id },
        h('td', {}, h('a', { class: 'job-id mono', href: '#/jobs/' + enc(job.id) }, job.id), labelChips(job.labels)),
        h('td', { class: 'name' }, job.name || ''),
        h('td', { class: 'trigger', title: JSON.stringify(job.trigger) }, describeTrigger(job.trigger)),
        h('td', { class: 'next-run' }, timeCell(job.next_run_time, jobZone(job))),
        h('td', { class: 'job-state' }, stateBadge(job.paused ? 'paused' : 'active')),
        h('td', { class: 'job-health', title: job.paused_reason || '' }, healthBadge(job)),
        h('td', { class: 'outcome' }, run
          ? [stateBadge(run.status), run.http_status ? ' ' + run.http_status : '', h('br'),
            h('span', { class: 'sub' }, relative(run.scheduled_time))]
          : h('span', { class: 'sub' }, 'no runs yet')),
        h('td', { class: 'actions' }, jobActions(job, reload)));
    }

    function render() {
      const shown = jobs.filter(matches);
      tbody.replaceChildren(...shown.map(row));
      if (!shown.length) {
        tbody.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' },
          jobs.length || view.selector.trim() ? 'No job matches the filter.' : 'No jobs yet. ',
          jobs.length || view.selector.trim() ? null : h('a', { href: '#/new' }, 'Add one.'))));
      }
      count.textContent = shown.length + ' of ' + jobs.length + (nextCursor ? '+' : '') + ' jobs';
      more.hidden = !nextCursor;
    }

    async function reload() {
      const page = await fetchJobs(null);
      jobs = page.jobs;
      nextCursor = page.next_cursor;
      render();
    }

    const filter = h('input', { type: 'search', id: 'filter', value: view.filter, placeholder: 'filter: id, name, trigger, state, url',
      oninput: (e) => { view.filter = e.target.value; render(); } });
    const stateFilter = h('select', { id: 'state-filter', onchange: (e) => { view.state = e.target.value; render(); } },
      ['all', 'active', 'paused', 'failing'].map((s) => h('option', { value: s, selected: view.state === s }, s)));
    const selectorError = h('span', { class: 'form-error', id: 'selector-error' });
    const applySelector = async (value) => {
      const before = view.selector;
      view.selector = value;
      try {
        await reload();
        selectorError.textContent = '';
      } catch (err) {
        if (!(err instanceof Problem) || err.status !== 422) throw err;
        view.selector = before;
        selectorError.textContent = err.message;
      }
    };
    const selectorFilter = h('input', { type: 'search', id: 'selector', value: view.selector,
      placeholder: 'labels: team=payments,!legacy', title: 'A label selector, applied by the server to every job',
      onchange: (e) => applySelector(e.target.value).catch((err) => flash('error: ' + err.message, true)) });
    await reload();
    if (seq !== pageSeq) return;
    setMain(
      h('h1', {}, 'Jobs'),
      h('div', { class: 'toolbar' }, filter, selectorFilter, selectorError, stateFilter, count,
        h('button', { onclick: (e) => act(e.target, null, reload) }, 'Refresh'),
        h('a', { class: 'button primary', href: '#/new' }, 'Add job')),
      h('table', { id: 'jobs' }, h('thead', {}, h('tr', {},
        ['ID', 'Name', 'Trigger', 'Next run', 'State', 'Health', 'Last outcome', ''].map((c) => h('th', {}, c)))), tbody),
      more);
    every(reload);
  }

  function optionalText(value) {
    return value === null || value === undefined ? '' : String(value);
  }

  function labelText(labels) {
    return Object.entries(labels || {}).map(([k, v]) => k + '=' + v).join(' ');
  }

  function labelChips(labels) {
    const entries = Object.entries(labels || {});
    return entries.length
      ? h('div', { class: 'labels' }, entries.map(([k, v]) => h('span', { class: 'label mono' }, k + '=' + v)))
      : null;
  }

  // ---- one job --------------------------------------------------------------------------------------------

  async function showJob(id) {
    const seq = pageSeq;
    let job = null;
    try {
      job = await api('GET', '/jobs/' + enc(id));
    } catch (err) {
      if (err.status !== 404) throw err;
    }
    const runs = await api('GET', '/jobs/' + enc(id) + '/runs?limit=' + RUN_PAGE).catch((err) => {
      if (err.status === 404) return { runs: [] };
      throw err;
    });
    const history = await api('GET', '/jobs/' + enc(id) + '/history?limit=' + HISTORY_PAGE).catch((err) => {
      if (err.status === 404) return { entries: [] };
      throw err;
    });
    const backfills = await api('GET', '/jobs/' + enc(id) + '/backfills').catch((err) => {
      if (err.status === 404) return { backfills: [] };
      throw err;
    });
    const notifications = await api('GET', '/jobs/' + enc(id) + '/notifications?limit=' + HISTORY_PAGE).catch((err) => {
      if (err.status === 404) return { notifications: [] };
      throw err;
    });
    if (!job && !runs.runs.length && !history.entries.length) {
      throw new Problem(404, { detail: 'no job with id ' + JSON.stringify(id) });
    }
    let preview = null;
    if (job) {
      preview = await api('POST', '/triggers/preview', { trigger: job.trigger, count: PREVIEW_COUNT })
        .catch((err) => ({ error: err.message }));
    }
    const zone = job ? jobZone(job) : null;
    const reload = () => showJob(id);
    const a = job && job.action;
    const config = job ? h('dl', { class: 'config', id: 'config' },
      [['Name', job.name || '—'],
        ['Trigger', [describeTrigger(job.trigger), h('br'), h('code', {}, JSON.stringify(job.trigger))]],
        ['Excluded calendars', triggerCalendars(job.trigger).length
          ? h('span', { id: 'job-calendars' }, triggerCalendars(job.trigger).map((c, i) =>
            [i ? ', ' : '', h('a', { class: 'mono', href: '#/calendars/' + enc(c) }, c)]))
          : '—'],
        ['Webhook', h('span', { class: 'mono' }, a.method + ' ' + a.url)],
        ['Headers', Object.keys(a.headers || {}).length
          ? h('span', { class: 'mono' }, Object.entries(a.headers).map(([k, v]) => [k + ': ' + v, h('br')])) : '—'],
        ['Body', a.json !== undefined ? h('code', {}, JSON.stringify(a.json)) : a.body !== undefined ? h('code', {}, a.body) : '—'],
        ['Timeout', (a.timeout_seconds || 30) + ' s'],
        ['Template', a.template ? 'yes: rendered for each attempt' : 'no'],
        ['Next run', timeCell(job.next_run_time, zone)],
        ['State', stateBadge(job.paused ? 'paused' : 'active')],
        ['Paused reason', job.paused_reason || '—'],
        ['Paused until', job.paused_until ? timeCell(job.paused_until, zone) : '—'],
        ['Health', job.health ? [healthBadge(job), ' ' + job.health.consecutive_failures + ' consecutive failures'] : '—'],
        ['Last success', job.health && job.health.last_success_at ? timeCell(job.health.last_success_at, zone) : '—'],
        ['Last failure', job.health && job.health.last_failure_at ? timeCell(job.health.last_failure_at, zone) : '—'],
        ['Notify', job.notify ? h('span', { class: 'mono', id: 'job-notify' }, job.notify.url + ' on ' + job.notify.on.join(', ')
          + ' (failure after ' + job.notify.failure_threshold + ')') : 'the configured default, if any'],
        ['Coalesce', String(job.coalesce)], ['Max instances', String(job.max_instances)],
        ['Misfire grace time', job.misfire_grace_time === null ? 'none (always run)' : job.misfire_grace_time + ' s'],
        ['Overlap', job.overlap || 'skip'],
        ['Max catch-up runs', job.max_catchup_runs === null || job.max_catchup_runs === undefined ? 'no bound' : String(job.max_catchup_runs)],
        ['Executor', job.executor], ['Job store', job.jobstore],
        ['Labels', labelChips(job.labels) || '—'],
        ['Created', timeCell(job.created_at, zone)], ['Updated', timeCell(job.updated_at, zone)],
      ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])) : h('p', {}, 'This job was removed; its run history and its history of changes remain.');

    const runRows = runs.runs.map((run) => h('tr', { 'data-status': run.status, 'data-kind': run.kind },
      h('td', {}, timeCell(run.scheduled_time, run.scheduled_time && zone)),
      h('td', { class: 'run-kind' }, run.kind),
      h('td', {}, stateBadge(run.status)),
      h('td', {}, String(run.attempts)),
      h('td', {}, run.http_status ? String(run.http_status) : '—'),
      h('td', {}, run.duration_ms !== null && run.duration_ms !== undefined ? run.duration_ms + ' ms' : '—'),
      h('td', { class: 'mono' }, run.error || run.response_excerpt || '')));

    if (seq !== pageSeq) return;
    setMain(
      h('h1', {}, 'Job ', h('span', { class: 'mono', id: 'job-title' }, id)),
      job ? h('div', { class: 'row-actions' }, h('a', { class: 'button', href: '#/edit/' + enc(id), id: 'edit' }, 'Edit'),
        jobActions(job, reload)) : null,
      h('h2', {}, 'Configuration'), config,
      job ? [h('h2', {}, 'Next ' + PREVIEW_COUNT + ' fire times'),
        job.paused ? h('p', { class: 'sub' }, 'The job is paused: its trigger\u2019s times, should it be resumed now.') : null,
        preview.error
        ? h('p', { class: 'form-error' }, preview.error)
        : h('ol', { id: 'fire-times', class: 'preview' }, preview.fire_times.map((t) => h('li', {}, timeCell(t, zone))))] : null,
      backfillSection(backfills.backfills, zone, reload),
      jobTabs([
        ['runs', 'Runs', h('table', { id: 'runs' }, h('thead', {}, h('tr', {}, ['Scheduled', 'Kind', 'Status', 'Attempts', 'HTTP', 'Duration', 'Error or response']
          .map((c) => h('th', {}, c)))), h('tbody', {}, runRows.length ? runRows
          : h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No runs yet.'))))],
        ['history', 'History', historyTable(history.entries)],
        ['notifications', 'Notifications', notificationTable(notifications.notifications)],
      ]),
      job ? h('details', {}, h('summary', {}, 'As JSON'), h('pre', {}, JSON.stringify(job, null, 2))) : null);
    every(reload);
  }

  // Tabs over a job's runs and its history of changes; the chosen one stays chosen across refreshes.
  function jobTabs(tabs) {
    const buttons = tabs.map(([name, label]) => h('button', {
      type: 'button', role: 'tab', id: 'tab-' + name, 'aria-controls': 'panel-' + name,
      'aria-selected': String(view.jobTab === name), class: view.jobTab === name ? 'tab current' : 'tab',
    }, label));
    const panels = tabs.map(([name, , content]) =>
      h('div', { role: 'tabpanel', id: 'panel-' + name, hidden: view.jobTab !== name }, content));
    buttons.forEach((button, index) => button.addEventListener('click', () => {
      view.jobTab = tabs[index][0];
      buttons.forEach((other, i) => {
        other.setAttribute('aria-selected', String(i === index));
        other.classList.toggle('current', i === index);
        panels[i].hidden = i !== index;
      });
    }));
    return [h('div', { class: 'tabs', role: 'tablist' }, buttons), panels];
  }

  // What an audit entry changed: added, removed, or the fields that differ (updated_at changes with everything).
  function changedFields(before, after) {
    if (!before && after) return 'added';
    if (before && !after) return 'removed';
    if (!before || !after) return '—';
    const names = new Set([...Object.keys(before), ...Object.keys(after)]);
    names.delete('updated_at');
    const changed = [...names].filter((name) => JSON.stringify(before[name]) !== JSON.stringify(after[name])).sort();
    return changed.length ? changed.join(', ') : '—';
  }

  // Who changed the job, when and why, newest first; each change with the job before and after it.
  function historyTable(entries) {
    const zone = scheduler && scheduler.timezone;
    const rows = entries.map((entry) => h('tr', { 'data-action': entry.action },
      h('td', {}, timeCell(entry.time, zone)),
      h('td', { class: 'actor' }, entry.actor),
      h('td', { class: 'mono' }, entry.action),
      h('td', { class: 'changed' }, changedFields(entry.before, entry.after),
        entry.before || entry.after ? h('details', {}, h('summary', { class: 'sub' }, 'before and after'),
          h('pre', {}, 'before: ' + JSON.stringify(entry.before, null, 2) + '\nafter: ' + JSON.stringify(entry.after, null, 2))) : null),
      h('td', { class: 'reason' }, entry.reason || '—')));
    return h('table', { id: 'history' }, h('thead', {}, h('tr', {}, ['Time', 'Who', 'Action', 'Changed', 'Why']
      .map((c) => h('th', {}, c)))), h('tbody', {}, rows.length ? rows
      : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No changes recorded.'))));
  }

  // The job's health notifications, newest first: what was told, and whether it got through.
  function notificationTable(notifications) {
    const zone = scheduler && scheduler.timezone;
    const rows = notifications.map((n) => h('tr', { 'data-type': n.type, 'data-state': n.state },
      h('td', {}, timeCell(n.created_at, zone)),
      h('td', { class: 'mono' }, n.type),
      h('td', {}, stateBadge(n.state)),
      h('td', {}, String(n.attempts)),
      h('td', { class: 'mono' }, n.last_error || '')));
    return h('table', { id: 'notifications' }, h('thead', {}, h('tr', {}, ['Time', 'Type', 'State', 'Attempts', 'Last error']
      .map((c) => h('th', {}, c)))), h('tbody', {}, rows.length ? rows
      : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No notifications. A job with notify (or the configured [notify]) sends them on failure, recovery, auto-pause, staleness and missed fires.'))));
  }

  // ---- add and edit ---------------------------------------------------------------------------------------

  // An input the browser found wrong before the server saw it; shown exactly like the API's problems.
  class FieldError extends Error {
    constructor(field, message) {
      super(message);
      this.field = field;
    }
  }

  function field(label, control, hint) {
    return h('div', { class: 'field', 'data-kind': control.dataset.kind || null },
      h('label', { for: control.id }, label), control,
      hint ? h('div', { class: 'hint' }, hint) : null,
      h('div', { class: 'error', hidden: true, role: 'alert' }));
  }

  function input(id, path, attrs) {
    return h('input', Object.assign({ id, name: id, 'data-field': path, autocomplete: 'off' }, attrs || {}));
  }

  // Per-kind trigger inputs are shown only for the chosen kind; their data-field is the API's path.
  function kindField(kind, label, id, path, attrs, hint) {
    const el = input(id, path, attrs);
    const wrapper = field(label, el, hint);
    wrapper.dataset.kind = kind;
    return wrapper;
  }

  function triggerKindOf(t) {
    if (!t) return 'crontab';
    if (t.type === 'cron') return t.crontab ? 'crontab' : 'cron';
    if (['interval', 'date', 'calendarinterval'].includes(t.type)) return t.type;
    return 'json';
  }

  function headersText(headers) {
    return Object.entries(headers || {}).map(([k, v]) => k + ': ' + v).join('\n');
  }

  async function showForm(id) {
    const seq = pageSeq;
    const job = id ? await api('GET', '/jobs/' + enc(id)) : null;
    if (seq !== pageSeq) return;
    const t = job ? job.trigger : null;
    const kind = triggerKindOf(t);
    const val = (v) => (v === undefined || v === null ? '' : String(v));
    const a = job ? job.action : { method: 'POST' };

    const kindSelect = h('select', { id: 'trigger-kind', 'data-field': 'trigger.type' },
      [['crontab', 'cron (crontab line)'], ['cron', 'cron (APScheduler fields)'], ['interval', 'interval'],
        ['date', 'date (once)'], ['calendarinterval', 'calendar interval'], ['json', 'JSON (any trigger, and/or)']]
        .map(([value, label]) => h('option', { value, selected: value === kind }, label)));
    const bodyKind = h('select', { id: 'body-kind' }, [['none', 'no body'], ['json', 'JSON'], ['text', 'text']]
      .map(([value, label]) => h('option', { value, selected: value === (a.json !== undefined ? 'json' : a.body !== undefined ? 'text' : 'none') }, label)));

    const triggerSet = h('fieldset', { id: 'trigger-fields', 'data-field': 'trigger' }, h('legend', {}, 'When'),
      field('Kind', kindSelect),
      kindField('crontab', 'Crontab', 'crontab', 'trigger.crontab', { value: t && t.crontab || (t ? '' : '*/5 * * * *'), class: 'mono', placeholder: '*/5 * * * *' },
        'minute hour day month weekday (0 and 7 are Sunday); @daily, L and # work too'),
      CRON_FIELDS.map((f) => kindField('cron', f.replace(/_/g, ' '), 'cron-' + f, 'trigger.' + f,
        { value: t && t.type === 'cron' ? val(t[f]) : '', class: 'mono', placeholder: '*' })),
      INTERVAL_FIELDS.map((f) => kindField('interval', f, 'interval-' + f, 'trigger.' + f,
        { value: t && t.type === 'interval' ? val(t[f]) : '', inputmode: 'decimal' })),
      kindField('date', 'Run date', 'run-date', 'trigger.run_date', { value: t && t.type === 'date' ? t.run_date : '', placeholder: '2026-12-01 10:00' },
        'RFC 3339, or a date-time read in the timezone below'),
      CALENDAR_FIELDS.map((f) => kindField('calendarinterval', f, 'calendar-' + f, 'trigger.' + f,
        { value: t && t.type === 'calendarinterval' ? val(t[f]) : '', inputmode: 'numeric' })),
      (() => {
        const area = h('textarea', { id: 'trigger-json', 'data-field': 'trigger', 'data-kind': 'json', class: 'mono', rows: 6 });
        area.value = t && kind === 'json' ? JSON.stringify(t, null, 2) : '';
        const wrapper = field('Trigger JSON', area, 'e.g. {"type": "or", "triggers": [...]}');
        wrapper.dataset.kind = 'json';
        return wrapper;
      })(),
      field('Timezone', input('timezone', 'trigger.timezone', { value: t && kind !== 'json' ? val(t.timezone) : '', placeholder: (scheduler && scheduler.timezone) || 'UTC' }), 'IANA name; empty: the scheduler\u2019s'),
      kindField('-date', 'Start date', 'start-date', 'trigger.start_date', { value: t && kind !== 'json' ? val(t.start_date) : '' }),
      kindField('-date', 'End date', 'end-date', 'trigger.end_date', { value: t && kind !== 'json' ? val(t.end_date) : '' }),
      kindField('-date', 'Jitter (s)', 'jitter', 'trigger.jitter', { value: t && kind !== 'json' ? val(t.jitter) : '', inputmode: 'decimal' }),
      kindField('-json', 'Except calendars', 'exclude-calendars', 'trigger.exclude_calendars',
        { value: t && kind !== 'json' ? (t.exclude_calendars || []).join(', ') : '', class: 'mono', placeholder: 'none' },
        'ids of calendars whose days it skips, comma-separated (see Calendars)'));

    const headersArea = h('textarea', { id: 'action-headers', 'data-field': 'action.headers', class: 'mono', rows: 3, placeholder: 'Name: value, one a line' });
    headersArea.value = headersText(a.headers);
    const jsonArea = h('textarea', { id: 'action-json', 'data-field': 'action.json', class: 'mono', rows: 4 });
    jsonArea.value = a.json !== undefined ? JSON.stringify(a.json, null, 2) : '';
    const textArea = h('textarea', { id: 'action-body', 'data-field': 'action.body', rows: 4 });
    textArea.value = a.body !== undefined ? a.body : '';
    const jsonWrap = field('JSON body', jsonArea);
    const textWrap = field('Text body', textArea);

    const actionSet = h('fieldset', { id: 'action-fields', 'data-field': 'action' }, h('legend', {}, 'Webhook'),
      field('Method', h('select', { id: 'action-method', 'data-field': 'action.method' },
        ['POST', 'GET', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => h('option', { selected: m === a.method }, m)))),
      field('URL', input('action-url', 'action.url', { value: val(a.url), class: 'mono', placeholder: 'absolute http or https URL of the webhook', required: true })),
      field('Headers', headersArea, job ? 'Secret values show as ' + MASK + ': re-enter them when you change the webhook' : null),
      field('Body', bodyKind), jsonWrap, textWrap,
      field('Timeout (s)', input('action-timeout', 'action.timeout_seconds', { value: val(a.timeout_seconds), placeholder: '30', inputmode: 'decimal' })),
      field('Template', input('action-template', 'action.template', { type: 'checkbox', checked: Boolean(a.template) }),
        'render URL, header values and body with {{ job.id }}, {{ scheduled_time }}, {{ attempt }}, {{ idempotency_key }}…'));

    const optionSet = h('fieldset', {}, h('legend', {}, 'Job'),
      field('ID', input('job-id', 'id', { value: job ? job.id : '', readonly: Boolean(job), class: 'mono', placeholder: 'a UUID when empty' }),
        job ? null : 'letters, digits and . _ : -'),
      field('Name', input('job-name', 'name', { value: job ? val(job.name) : '' })),
      field('Coalesce', h('select', { id: 'coalesce', 'data-field': 'coalesce' },
        [['', 'default'], ['true', 'yes: run a backlog once'], ['false', 'no: run every missed fire']]
          .map(([value, label]) => h('option', { value, selected: job ? String(job.coalesce) === value : value === '' }, label)))),
      field('Max instances', input('max-instances', 'max_instances', { value: job ? val(job.max_instances) : '', placeholder: 'default', inputmode: 'numeric' })),
      field('Misfire grace (s)', input('misfire', 'misfire_grace_time', {
        value: job ? (job.misfire_grace_time === null ? 'none' : val(job.misfire_grace_time)) : '', placeholder: 'default',
      }), '"none": always run, however late'),
      field('Overlap', h('select', { id: 'overlap', 'data-field': 'overlap' },
        [['skip', 'skip: record the fire skipped'], ['buffer_one', 'buffer one: run the newest when a run ends'],
          ['buffer_all', 'buffer all: run each in order as runs end'], ['cancel_other', 'cancel other: abort the oldest run']]
          .map(([value, label]) => h('option', { value, selected: (job ? job.overlap || 'skip' : 'skip') === value }, label))),
        'what a fire does while max instances runs are going'),
      field('Max catch-up runs', input('max-catchup', 'max_catchup_runs', {
        value: job && job.max_catchup_runs !== null && job.max_catchup_runs !== undefined ? val(job.max_catchup_runs) : '',
        placeholder: 'no bound', inputmode: 'numeric',
      }), 'after downtime, without coalesce: deliver only the newest this many missed fires'),
      field('Labels', input('job-labels', 'labels', { value: job ? labelText(job.labels) : '', class: 'mono', placeholder: 'team=payments tier=gold' }),
        'key=value pairs, separated by spaces or commas; select jobs by them'),
      field('Auto-pause after failures', input('auto-pause', 'auto_pause_after_failures', {
        value: job ? optionalText(job.auto_pause_after_failures) : '', placeholder: 'off', inputmode: 'numeric',
      }), 'pause the job after this many consecutive failed runs'),
      field('Stale after (s)', input('stale-after', 'stale_after_seconds', {
        value: job ? optionalText(job.stale_after_seconds) : '', placeholder: 'off', inputmode: 'numeric',
      }), 'mark the job stale when no run succeeded for this long'),
      field('Executor', input('executor', 'executor', { value: job ? job.executor : '', placeholder: 'default' })),
      job ? null : field('Job store', input('jobstore', 'jobstore', { placeholder: 'default' })),
      field('Paused', input('paused', 'paused', { type: 'checkbox', checked: Boolean(job && job.paused) })),
      job ? null : field('Replace existing', input('replace', 'replace_existing', { type: 'checkbox' }), 'replace a job with the same id instead of failing'));

    const formError = h('div', { class: 'form-error', id: 'form-error', hidden: true, role: 'alert' });
    const previewList = h('ol', { id: 'preview' });
    const previewNote = h('p', { class: 'sub', id: 'preview-note' });
    const form = h('form', { class: 'job', id: 'job-form', novalidate: true },
      h('div', {}, triggerSet, actionSet, optionSet, formError,
        h('div', { class: 'row-actions' }, h('button', { type: 'submit', class: 'primary', id: 'save' }, job ? 'Save changes' : 'Add job'),
          h('a', { class: 'button', href: job ? '#/jobs/' + enc(job.id) : '#/jobs' }, 'Cancel'))),
      h('aside', { class: 'preview' }, h('h2', {}, 'Next ' + PREVIEW_COUNT + ' fire times'), previewNote, previewList));
    setMain(h('h1', {}, job ? 'Edit job ' + job.id : 'Add a job'), form);

    const value = (elId) => document.getElementById(elId).value.trim();

    function showKinds() {
      const chosen = kindSelect.value;
      for (const el of form.querySelectorAll('.field[data-kind]')) {
        const k = el.dataset.kind;
        el.hidden = k.startsWith('-') ? chosen === k.slice(1) || chosen === 'json' : k !== chosen;
      }
      jsonWrap.hidden = bodyKind.value !== 'json';
      textWrap.hidden = bodyKind.value !== 'text';
      // The zone box is shared by every kind but the raw JSON one.
      document.getElementById('timezone').closest('.field').hidden = chosen === 'json';
    }

    // `team=payments tier=gold` (or comma-separated) as a labels object; the server checks keys and values.
    function labelsOf(text) {
      const labels = {};
      for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
        const at = pair.indexOf('=');
        if (at <= 0) throw new FieldError('labels', JSON.stringify(pair) + ' is not key=value');
        labels[pair.slice(0, at)] = pair.slice(at + 1);
      }
      return labels;
    }

    function number(elId, path, integer) {
      const text = value(elId);
      if (text === '') return undefined;
      const n = Number(text);
      if (Number.isNaN(n) || (integer && !Number.isInteger(n))) throw new FieldError(path, JSON.stringify(text) + ' is not ' + (integer ? 'a whole number' : 'a number'));
      return n;
    }

    function buildTrigger() {
      const chosen = kindSelect.value;
      if (chosen === 'json') {
        try {
          return JSON.parse(document.getElementById('trigger-json').value);
        } catch (err) {
          throw new FieldError('trigger', 'not JSON: ' + err.message);
        }
      }
      const trigger = {};
      if (chosen === 'crontab') Object.assign(trigger, { type: 'cron', crontab: value('crontab') });
      if (chosen === 'cron') {
        trigger.type = 'cron';
        for (const f of CRON_FIELDS) if (value('cron-' + f) !== '') trigger[f] = value('cron-' + f);
      }
      if (chosen === 'interval') {
        trigger.type = 'interval';
        for (const f of INTERVAL_FIELDS) { const n = number('interval-' + f, 'trigger.' + f); if (n !== undefined) trigger[f] = n; }
      }
      if (chosen === 'date') Object.assign(trigger, { type: 'date', run_date: value('run-date') });
      if (chosen === 'calendarinterval') {
        trigger.type = 'calendarinterval';
        for (const f of CALENDAR_FIELDS) { const n = number('calendar-' + f, 'trigger.' + f, true); if (n !== undefined) trigger[f] = n; }
      }
      if (value('timezone')) trigger.timezone = value('timezone');
      const calendars = value('exclude-calendars').split(',').map((c) => c.trim()).filter((c) => c);
      if (calendars.length) trigger.exclude_calendars = calendars;
      if (chosen !== 'date') {
        if (value('start-date')) trigger.start_date = value('start-date');
        if (value('end-date')) trigger.end_date = value('end-date');
        const jitter = number('jitter', 'trigger.jitter');
        if (jitter !== undefined) trigger.jitter = jitter;
      }
      return trigger;
    }

    function buildAction() {
      const action = { method: document.getElementById('action-method').value, url: value('action-url') };
      const headers = {};
      headersArea.value.split('\n').forEach((line, i) => {
        if (!line.trim()) return;
        const colon = line.indexOf(':');
        if (colon < 1) throw new FieldError('action.headers', 'line ' + (i + 1) + ': write "Name: value"');
        headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
      });
      if (Object.keys(headers).length) action.headers = headers;
      if (bodyKind.value === 'json') {
        try {
          action.json = JSON.parse(jsonArea.value);
        } catch (err) {
          throw new FieldError('action.json', 'not JSON: ' + err.message);
        }
      }
      if (bodyKind.value === 'text') action.body = textArea.value;
      const timeout = number('action-timeout', 'action.timeout_seconds');
      if (timeout !== undefined) action.timeout_seconds = timeout;
      if (document.getElementById('action-template').checked) action.template = true;
      return action;
    }

    // ---- errors beside their fields

    function clearErrors(prefix) {
      for (const el of form.querySelectorAll('[aria-invalid=true]')) {
        if (!prefix || (el.dataset.field || '').startsWith(prefix)) el.removeAttribute('aria-invalid');
      }
      for (const el of form.querySelectorAll('.field .error')) {
        const control = el.parentElement.querySelector('[data-field]');
        if (!prefix || (control && (control.dataset.field || '').startsWith(prefix))) { el.hidden = true; el.textContent = ''; }
      }
      if (!prefix) formError.hidden = true;
    }

    // The API names the field at fault (`action.url`, `trigger.triggers[1].hour`); show the message beside the
    // closest visible input, else at the foot of the form.
    function showFieldError(path, message) {
      const text = message.startsWith(path + ': ') ? message.slice(path.length + 2) : message;
      let candidate = path;
      while (candidate) {
        const control = [...form.querySelectorAll('[data-field]')].find((el) =>
          el.dataset.field === candidate && !el.closest('[hidden]') && el.closest('.field'));
        if (control) {
          control.setAttribute('aria-invalid', 'true');
          const slot = control.closest('.field').querySelector('.error');
          slot.textContent = candidate === path ? text : path + ': ' + text;
          slot.hidden = false;
          return control;
        }
        const parent = candidate.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
        candidate = parent === candidate ? '' : parent;
      }
      // A problem with the trigger or webhook as a whole goes beside its first input.
      const anchor = { trigger: kindSelect, action: document.getElementById('action-url') }[path.split(/[.[]/)[0]];
      if (anchor) {
        anchor.setAttribute('aria-invalid', 'true');
        const slot = anchor.closest('.field').querySelector('.error');
        slot.textContent = message;
        slot.hidden = false;
        return anchor;
      }
      formError.textContent = 'error: ' + message;
      formError.hidden = false;
      return formError;
    }

    // ---- live preview

    let previewSeq = 0;
    async function refreshPreview() {
      const seq = ++previewSeq;
      clearErrors('trigger');
      let trigger;
      try {
        trigger = buildTrigger();
      } catch (err) {
        previewList.replaceChildren();
        previewNote.textContent = err.message;
        if (err.field) showFieldError(err.field, err.message);
        return;
      }
      try {
        const result = await api('POST', '/triggers/preview', { trigger, count: PREVIEW_COUNT });
        if (seq !== previewSeq) return;
        const zone = trigger.timezone || (scheduler && scheduler.timezone);
        previewNote.textContent = result.fire_times.length ? '' : 'This trigger never fires from now on.';
        previewList.replaceChildren(...result.fire_times.map((time) => h('li', {}, timeCell(time, zone))));
      } catch (err) {
        if (seq !== previewSeq) return;
        previewList.replaceChildren();
        previewNote.textContent = err.message;
        if (err.field) showFieldError(err.field, err.message);
      }
    }
    let previewTimer = null;
    const schedulePreview = () => { clearTimeout(previewTimer); previewTimer = setTimeout(refreshPreview, PREVIEW_DEBOUNCE_MS); };
    triggerSet.addEventListener('input', schedulePreview);
    kindSelect.addEventListener('change', () => { showKinds(); schedulePreview(); });
    bodyKind.addEventListener('change', showKinds);

    // ---- submit

    function buildBody() {
      const body = { trigger: buildTrigger(), action: buildAction() };
      if (value('job-name')) body.name = value('job-name');
      const coalesce = document.getElementById('coalesce').value;
      if (coalesce) body.coalesce = coalesce === 'true';
      const maxInstances = number('max-instances', 'max_instances', true);
      if (maxInstances !== undefined) body.max_instances = maxInstances;
      const misfire = value('misfire');
      if (misfire.toLowerCase() === 'none') body.misfire_grace_time = null;
      else if (misfire !== '') body.misfire_grace_time = number('misfire', 'misfire_grace_time', true);
      body.overlap = document.getElementById('overlap').value;
      const catchup = number('max-catchup', 'max_catchup_runs', true);
      if (catchup !== undefined) body.max_catchup_runs = catchup;
      else if (job && job.max_catchup_runs !== null && job.max_catchup_runs !== undefined) body.max_catchup_runs = null;
      body.labels = labelsOf(value('job-labels'));
      for (const [elId, key] of [['auto-pause', 'auto_pause_after_failures'], ['stale-after', 'stale_after_seconds']]) {
        const n = number(elId, key, true);
        if (n !== undefined) body[key] = n;
        else if (job && job[key] !== null && job[key] !== undefined) body[key] = null;
      }
      if (value('executor')) body.executor = value('executor');
      body.paused = document.getElementById('paused').checked;
      if (!job) {
        if (value('job-id')) body.id = value('job-id');
        if (value('jobstore')) body.jobstore = value('jobstore');
        body.replace_existing = document.getElementById('replace').checked;
      }
      return body;
    }

    // Only what changed goes into a PATCH, so an untouched webhook keeps its masked secrets.
    function patchOf(body) {
      // Keys sorted, and numbers as text: a cron field stored as 9 and typed as "9" is no change.
      const canonical = (v) => JSON.stringify(v, (_, x) => {
        if (typeof x === 'number') return String(x);
        if (x && typeof x === 'object' && !Array.isArray(x)) {
          return Object.fromEntries(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : 1)));
        }
        return x;
      });
      const before = { name: job.name, trigger: job.trigger, action: Object.assign({}, job.action), coalesce: job.coalesce,
        max_instances: job.max_instances, misfire_grace_time: job.misfire_grace_time, executor: job.executor, paused: job.paused,
        max_catchup_runs: job.max_catchup_runs, overlap: job.overlap, labels: job.labels || {},
        auto_pause_after_failures: job.auto_pause_after_failures, stale_after_seconds: job.stale_after_seconds };
      delete before.action.type;
      const patch = {};
      if (!body.name && job.name) patch.name = null;
      for (const key of Object.keys(body)) {
        if (canonical(body[key]) !== canonical(before[key])) patch[key] = body[key];
      }
      if (patch.action && Object.values(patch.action.headers || {}).includes(MASK)) {
        throw new FieldError('action.headers', 'a value shows as ' + MASK + ' (a masked secret): type the real value again, or remove that header, before changing the webhook');
      }
      return patch;
    }

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearErrors();
      const save = document.getElementById('save');
      save.disabled = true;
      try {
        const body = buildBody();
        let saved;
        if (job) {
          const patch = patchOf(body);
          saved = Object.keys(patch).length ? await api('PATCH', '/jobs/' + enc(job.id), patch) : job;
          flash(Object.keys(patch).length ? 'Saved ' + job.id : 'Nothing changed');
        } else {
          saved = await api('POST', '/jobs', body);
          flash('Added ' + saved.id);
        }
        location.hash = '#/jobs/' + enc(saved.id);
      } catch (err) {
        const where = err.field ? showFieldError(err.field, err.message) : showFieldError('', err.message);
        where.scrollIntoView({ block: 'center' });
      } finally {
        save.disabled = false;
      }
    });

    showKinds();
    refreshPreview();
  }

  // ---- the scheduler --------------------------------------------------------------------------------------

  async function showScheduler() {
    const seq = pageSeq;
    const s = await loadScheduler();
    if (seq !== pageSeq) return;
    const control = (verb, label) => h('button', { id: 'scheduler-' + verb, onclick: (e) => act(e.target, async () => {
      await api('POST', '/scheduler/' + verb);
      return 'Scheduler ' + (verb === 'pause' ? 'paused' : 'resumed');
    }, showScheduler) }, label);
    setMain(
      h('h1', {}, 'Scheduler'),
      h('p', {}, 'State: ', h('span', { id: 'scheduler-state' }, stateBadge(s.state)), ' · timezone ', h('code', {}, s.timezone)),
      h('div', { class: 'row-actions' }, s.state === 'running' ? control('pause', 'Pause all firing')
        : s.state === 'paused' ? control('resume', 'Resume firing') : null),
      h('p', { class: 'sub' }, 'Pausing stops firing for every job; the API keeps serving and jobs keep their own state.'),
      h('h2', {}, 'Executors'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Max workers', 'Running', 'Queued'].map((c) => h('th', {}, c)))),
        h('tbody', {}, Object.entries(s.executors).map(([name, e]) => h('tr', {},
          h('td', {}, name), h('td', {}, String(e.max_workers)), h('td', {}, String(e.running)), h('td', {}, String(e.queued)))))),
      h('h2', {}, 'Job stores'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Type'].map((c) => h('th', {}, c)))),
        h('tbody', {}, Object.entries(s.jobstores).map(([name, js]) => h('tr', {}, h('td', {}, name), h('td', {}, js.type))))),
      h('h2', {}, 'Job defaults'),
      h('dl', { class: 'config' }, h('dt', {}, 'Coalesce'), h('dd', {}, String(s.job_defaults.coalesce)),
        h('dt', {}, 'Max instances'), h('dd', {}, String(s.job_defaults.max_instances)),
        h('dt', {}, 'Misfire grace time'), h('dd', {}, s.job_defaults.misfire_grace_time === null ? 'none' : s.job_defaults.misfire_grace_time + ' s')));
    every(showScheduler);
  }

  // ---- calendars ------------------------------------------------------------------------------------------

  function calendarExcludes(c) {
    const ex = c.exclude || {};
    const parts = [];
    if ((ex.dates || []).length) parts.push(plural(ex.dates.length, 'date'));
    if ((ex.ranges || []).length) parts.push(plural(ex.ranges.length, 'range'));
    if ((ex.weekdays || []).length) parts.push(ex.weekdays.join(', '));
    if (c.ics) parts.push(plural((c.ics.match(/BEGIN:VEVENT/g) || []).length, 'iCalendar event'));
    return parts.join(' · ') || 'nothing yet';
  }

  async function showCalendars(selected) {
    const seq = pageSeq;
    const list = await api('GET', '/calendars');
    if (seq !== pageSeq) return;
    const result = h('span', { id: 'check-result', class: 'sub' });
    const checkForm = (c) => {
      const time = h('input', { id: 'check-time', placeholder: 'a time, e.g. 2026-12-25 09:00 (in ' + c.timezone + ')' });
      return h('form', { id: 'check-form', class: 'toolbar', onsubmit: async (e) => {
        e.preventDefault();
        try {
          const answer = await api('POST', '/calendars/' + enc(c.id) + '/check', { times: [time.value] });
          result.textContent = answer.excluded[0] ? 'excluded: no job using this calendar fires then' : 'not excluded';
        } catch (err) {
          result.textContent = err.message;
        }
      } }, time, h('button', { type: 'submit' }, 'Check'), result);
    };
    const rows = list.calendars.map((c) => h('tr', { 'data-calendar-id': c.id },
      h('td', {}, h('a', { class: 'mono', href: '#/calendars/' + enc(c.id) }, c.id)),
      h('td', {}, c.timezone || ''),
      h('td', { class: 'excludes' }, calendarExcludes(c)),
      h('td', {}, c.base ? h('a', { class: 'mono', href: '#/calendars/' + enc(c.base) }, c.base) : '—')));
    const chosen = selected && list.calendars.find((c) => c.id === selected);
    if (selected && !chosen) throw new Problem(404, { detail: 'no calendar with id ' + JSON.stringify(selected) });
    setMain(
      h('h1', {}, 'Calendars'),
      h('p', { class: 'sub' }, 'Named exclusions: a trigger with ', h('code', {}, 'exclude_calendars'),
        ' does not fire in their dates, ranges, weekdays and iCalendar events. Add or change them with ',
        h('code', {}, 'PUT /v1/calendars/{id}'), ' or ', h('code', {}, 'apsched calendars put'), '.'),
      h('table', { id: 'calendars' }, h('thead', {}, h('tr', {}, ['ID', 'Timezone', 'Excludes', 'Base'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No calendars yet.')))),
      chosen ? [h('h2', {}, 'Calendar ', h('span', { class: 'mono', id: 'calendar-title' }, chosen.id)),
        h('dl', { class: 'config', id: 'calendar-config' },
          [['Timezone', chosen.timezone],
            ['Dates', (chosen.exclude.dates || []).join(', ') || '—'],
            ['Ranges', (chosen.exclude.ranges || []).map((r) => r.start + ' to ' + r.end).join(', ') || '—'],
            ['Weekdays', (chosen.exclude.weekdays || []).join(', ') || '—'],
            ['iCalendar', chosen.ics ? h('details', {}, h('summary', {}, calendarExcludes({ ics: chosen.ics })), h('pre', {}, chosen.ics)) : '—'],
            ['Base', chosen.base || '—']].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        checkForm(chosen)] : null);
  }

  // ---- backfills -------------------------------------------------------------------------------------------

  // A job's backfills, newest first: range, state and counts (refreshed with the page), Cancel while running.
  function backfillSection(backfills, zone, after) {
    const rows = backfills.map((b) => h('tr', { 'data-backfill': b.id, 'data-state': b.state },
      h('td', { class: 'mono' }, b.id),
      h('td', {}, timeCell(b.start, zone), ' – ', timeCell(b.end, zone)),
      h('td', {}, stateBadge(b.state)),
      h('td', { class: 'backfill-counts' }, b.delivered + ' / ' + b.failed + ' / ' + b.skipped + ' of ' + b.total),
      h('td', {}, b.state === 'running' ? h('button', {
        'data-action': 'cancel-backfill', class: 'danger',
        onclick: (e) => {
          if (!confirm('Cancel backfill ' + b.id + '? Fires not delivered yet will not be.')) return;
          act(e.target, async () => { await api('DELETE', '/backfills/' + enc(b.id)); return 'Cancelled backfill ' + b.id; }, after);
        },
      }, 'Cancel') : '')));
    return [h('h2', {}, 'Backfills'),
      h('table', { id: 'backfills' }, h('thead', {}, h('tr', {}, ['Id', 'Range', 'State', 'Delivered / failed / skipped', '']
        .map((c) => h('th', {}, c)))), h('tbody', {}, rows.length ? rows
        : h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No backfills. Start one with POST /v1/jobs/{id}/backfill or apsched jobs backfill.'))))];
  }

  // ---- start ----------------------------------------------------------------------------------------------

  const tokenInput = document.getElementById('token');
  tokenInput.value = localStorage.getItem(TOKEN_KEY) || '';
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
    flash(token ? 'Token saved in this browser; requests send it as a bearer token.' : 'Token removed.');
    scheduler = null;
    route();
  });

  // For tests and the curious: the words a trigger is shown with.
  window.apsched = { describeTrigger, triggerCalendars };
  window.addEventListener('hashchange', route);
  route();
})();
