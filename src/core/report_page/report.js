// The script of `pollkill report --html`, compiled into pollkill (report_assets.h).
// It only reads the page: the data block (JSON, parsed, never evaluated) and the drawn
// SVG. Every string from the records reaches the page through textContent, never as markup.
(function () {
  'use strict';
  var block = document.getElementById('pk-data');
  if (!block) return;
  var data = JSON.parse(block.textContent);
  var F = {};
  data.fields.forEach(function (name, i) { F[name] = i; });
  var attempts = data.attempts;
  var svg = document.getElementById('timeline');
  var axis = document.getElementById('axis');
  var tip = document.getElementById('tip');
  var panel = document.getElementById('details');
  var SVGNS = 'http://www.w3.org/2000/svg';

  var bars = [];
  var byId = {};
  attempts.forEach(function (a, k) {
    var id = a[F.id];
    (byId[id] = byId[id] || []).push(k);
  });
  if (svg) {
    svg.querySelectorAll('rect[data-a]').forEach(function (el) { bars[+el.dataset.a] = el; });
  }

  function duration(s) {
    if (s === null || s === undefined) return '';
    if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + 's';
    var m = Math.floor(s / 60), r = Math.floor(s - m * 60);
    if (m < 60) return m + 'm' + (r < 10 ? '0' : '') + r + 's';
    var h = Math.floor(m / 60), mm = m - h * 60;
    return h + 'h' + (mm < 10 ? '0' : '') + mm + 'm';
  }
  function size(b) {
    if (b === null || b === undefined) return 'not recorded';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? b : b.toFixed(1)) + ' ' + units[i];
  }
  function clock(offset) {
    var d = new Date((data.t0 + offset) * 1000);
    return d.toISOString().replace('T', ' ').replace('Z', ' UTC');
  }
  function logPath(p) { return p ? data.log_prefix + p : ''; }
  function laneName(a) {
    return a[F.lane] >= 0 ? data.lanes[a[F.lane]] : 'not on the timeline (no start time)';
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function summaryLine(a) {
    var s = a[F.id] + '  (attempt ' + a[F.attempt] + ')\n' + a[F.status] + ': ' + a[F.reason] +
      '\nwall ' + duration(a[F.wall_s]) + ', CPU ' + duration(a[F.cpu_s]);
    if (a[F.memory_peak_bytes] !== null) s += ', memory peak ' + size(a[F.memory_peak_bytes]);
    return s + '\n' + laneName(a);
  }

  function select(k) {
    bars.forEach(function (b) { if (b) b.classList.remove('sel', 'rel'); });
    var a = attempts[k];
    if (!a || !panel) return;
    // The address names the task, so that it can be shared: REPORT.html#task=ID.
    try {
      history.replaceState(null, '', '#task=' + encodeURIComponent(a[F.id]));
    } catch (e) { /* some browsers refuse it for file:// pages; the selection still works */ }
    (byId[a[F.id]] || []).forEach(function (j) { if (bars[j]) bars[j].classList.add('rel'); });
    if (bars[k]) { bars[k].classList.remove('rel'); bars[k].classList.add('sel'); }
    panel.textContent = '';
    var h = el('h3');
    h.appendChild(el('span', 'pill s-' + a[F.status], a[F.status]));
    h.appendChild(document.createTextNode(' ' + a[F.id] + ' · attempt ' + a[F.attempt] +
      (a[F.final] ? ' (final)' : ' (retried)')));
    panel.appendChild(h);
    var dl = el('dl');
    function row(key, value, mono) {
      if (value === '' || value === null || value === undefined) return;
      dl.appendChild(el('dt', '', key));
      dl.appendChild(el('dd', mono ? 'mono' : '', String(value)));
    }
    row('reason', a[F.reason]);
    row('command', a[F.command], true);
    var exit = a[F.exit_code] !== null ? 'exit code ' + a[F.exit_code] : '';
    if (a[F.signal] !== null) exit += (exit ? ', ' : '') + 'signal ' + a[F.signal];
    row('ended', exit);
    if (a[F.start] !== null) row('started', clock(a[F.start]) + '  (+' + duration(a[F.start]) + ')');
    row('wall time', duration(a[F.wall_s]));
    row('CPU time', duration(a[F.cpu_s]) + (a[F.wall_s] > 0 ? '  (' +
      (a[F.cpu_s] / a[F.wall_s]).toFixed(2) + ' CPUs on average)' : ''));
    row('memory peak', size(a[F.memory_peak_bytes]));
    row('processes reaped', a[F.processes_reaped]);
    row('ran on', laneName(a));
    row('stack signature', a[F.stack_signature], true);
    row('stdout', logPath(a[F.stdout]), true);
    row('stderr', logPath(a[F.stderr]), true);
    row('record', data.source + ':' + a[F.line], true);
    panel.appendChild(dl);
    var ids = byId[a[F.id]] || [];
    if (ids.length > 1) {
      var p = el('p', 'attempts', 'attempts of this task: ');
      ids.forEach(function (j) {
        var b = el('button', j === k ? 'cur' : '', '#' + attempts[j][F.attempt] + ' ' +
          attempts[j][F.status]);
        b.addEventListener('click', function () { select(j); });
        p.appendChild(b);
      });
      panel.appendChild(p);
    }
  }

  // REPORT.html#task=ID opens with the last attempt of that task selected.
  function selectFromAddress() {
    var m = /^#task=(.*)$/.exec(location.hash);
    if (!m) return;
    var ids = byId[decodeURIComponent(m[1])];
    if (ids) select(ids[ids.length - 1]);
  }

  document.querySelectorAll('a.pick').forEach(function (link) {
    link.addEventListener('click', function (e) {
      e.preventDefault();
      var k = +link.dataset.a;
      select(k);
      if (svg) svg.scrollIntoView({ behavior: 'smooth', block: 'center' });
    });
  });
  if (!svg) {
    selectFromAddress();
    document.body.dataset.ready = '1';
    return;
  }

  var view = { x: 0, w: data.plot.width };
  function showTip(text, e) {
    tip.textContent = text;
    tip.style.display = 'block';
    var x = e.clientX + 14, y = e.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) x = e.clientX - tip.offsetWidth - 10;
    if (y + tip.offsetHeight > window.innerHeight) y = e.clientY - tip.offsetHeight - 10;
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function plotX(e) {
    var r = svg.getBoundingClientRect();
    return view.x + (e.clientX - r.left) / r.width * view.w;
  }
  function cellText(c) {
    var b0 = +c.dataset.b0, b1 = +c.dataset.b1 + 1;
    return data.lanes[+c.dataset.l] + '\n+' + duration(b0 * data.bins.bin_s) + ' to +' +
      duration(b1 * data.bins.bin_s) + '\nbusy ' + c.dataset.p + '% of the time, mostly ' +
      c.className.baseVal.replace(/.*s-/, '') + '\n(' + data.bins.note + ')';
  }

  var brush = null, dragFrom = null;
  svg.addEventListener('mousemove', function (e) {
    if (dragFrom !== null) {
      var x = plotX(e);
      brush.setAttribute('x', Math.min(x, dragFrom));
      brush.setAttribute('width', Math.abs(x - dragFrom));
      return;
    }
    var t = e.target;
    if (t.dataset && t.dataset.a !== undefined) showTip(summaryLine(attempts[+t.dataset.a]), e);
    else if (t.dataset && t.dataset.l !== undefined) showTip(cellText(t), e);
    else tip.style.display = 'none';
  });
  svg.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  svg.addEventListener('mousedown', function (e) {
    if (e.button !== 0) return;
    dragFrom = plotX(e);
    brush = document.createElementNS(SVGNS, 'rect');
    brush.setAttribute('class', 'brush');
    brush.setAttribute('x', dragFrom);
    brush.setAttribute('y', 0);
    brush.setAttribute('width', 0);
    brush.setAttribute('height', data.plot.height);
    svg.appendChild(brush);
    e.preventDefault();
  });
  window.addEventListener('mouseup', function (e) {
    if (dragFrom === null) return;
    var x = plotX(e), from = dragFrom;
    dragFrom = null;
    svg.removeChild(brush);
    var w = Math.abs(x - from);
    if (w > view.w / 200) {
      zoom(Math.min(x, from), w);
    } else if (e.target.dataset && e.target.dataset.a !== undefined) {
      select(+e.target.dataset.a);
    }
  });

  // Ticks at 1, 2 or 5 times a power of ten seconds, or at whole minutes and hours.
  var steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60,
    120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  function tickLabel(s) {
    if (s === 0) return '0';
    if (s < 1) return +(s * 1000).toFixed(0) + 'ms';
    if (s < 60) return +s.toFixed(3) + 's';
    var h = Math.floor(s / 3600), m = Math.floor((s - h * 3600) / 60), r = s - h * 3600 - m * 60;
    return (h ? h + 'h' : '') + (m ? m + 'm' : '') + (r ? +r.toFixed(3) + 's' : '');
  }
  function drawAxis() {
    var perUnit = data.span_s / data.plot.width;
    var t0 = view.x * perUnit, t1 = (view.x + view.w) * perUnit;
    var step = steps[steps.length - 1];
    for (var i = 0; i < steps.length; i++) {
      if ((t1 - t0) / steps[i] <= 10) { step = steps[i]; break; }
    }
    axis.textContent = '';
    svg.querySelectorAll('line.gridline').forEach(function (l) { l.remove(); });
    for (var t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      var frac = (t - t0) / (t1 - t0);
      var label = document.createElementNS(SVGNS, 'text');
      label.setAttribute('x', (frac * 100).toFixed(3) + '%');
      label.setAttribute('y', 15);
      label.setAttribute('text-anchor', frac < 0.02 ? 'start' : frac > 0.98 ? 'end' : 'middle');
      label.textContent = tickLabel(+t.toFixed(6));
      axis.appendChild(label);
      var g = document.createElementNS(SVGNS, 'line');
      var gx = t / perUnit;
      g.setAttribute('class', 'gridline');
      g.setAttribute('x1', gx);
      g.setAttribute('x2', gx);
      g.setAttribute('y1', 0);
      g.setAttribute('y2', data.plot.height);
      svg.insertBefore(g, svg.firstChild);
    }
  }
  var reset = document.getElementById('zoom-reset');
  function zoom(x, w) {
    view.x = x;
    view.w = w;
    svg.setAttribute('viewBox', x + ' 0 ' + w + ' ' + data.plot.height);
    drawAxis();
    reset.disabled = x === 0 && w === data.plot.width;
  }
  reset.addEventListener('click', function () { zoom(0, data.plot.width); });
  reset.disabled = true;
  selectFromAddress();
  // Tells a test (or a person with the inspector) that the script ran to its end.
  document.body.dataset.ready = '1';
})();
